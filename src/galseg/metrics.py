"""Per-image metrics from the confusion matrix, their summaries, and the evaluation of a run.

Definitions, per image, from TP, FP, FN, TN pixel counts (arm = positive):

- accuracy  = (TP + TN) / (TP + FP + FN + TN)       always defined
- precision = TP / (TP + FP)       undefined (NaN) when the model marks no arm pixel
- recall    = TP / (TP + FN)       undefined (NaN) when the volunteers mark no arm pixel
- Jaccard   = TP / (TP + FP + FN)  undefined (NaN) when neither marks an arm; 0 when only one does
- Dice      = 2TP / (2TP + FP + FN) likewise

Undefined values are NaN and are left out of means (``nanmean``), never counted as 0 or 1.
The paper's Table 1 averages over the galaxies where both the volunteers and the model mark
arms (so every metric is defined there) and reports separately the share where both mark none.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.table import Table, vstack

from galseg import THRESHOLDS, GalsegError, __version__
from galseg.dataset import open_dataset
from galseg.gz3d import rasterise_outlines, read_gz3d
from galseg.predict import Predictor, load, upsample
from galseg.progress import progress

METRICS = ("accuracy", "precision", "recall", "jaccard", "dice")
TABLE1_METRICS = ("accuracy", "precision", "jaccard")


def confusion(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Pixel counts per image: (N, 4) int64 columns TP, FP, FN, TN, for (N, H, W) boolean masks."""
    truth = np.asarray(truth, dtype=bool).reshape(len(truth), -1)
    predicted = np.asarray(predicted, dtype=bool).reshape(len(predicted), -1)
    if truth.shape != predicted.shape:
        raise GalsegError(f"masks differ in shape: truth {truth.shape}, prediction {predicted.shape}")
    tp = np.count_nonzero(truth & predicted, axis=1)
    fp = np.count_nonzero(~truth & predicted, axis=1)
    fn = np.count_nonzero(truth & ~predicted, axis=1)
    tn = truth.shape[1] - tp - fp - fn
    return np.stack([tp, fp, fn, tn], axis=1).astype(np.int64)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.maximum(denominator, 1), np.nan)


def scores(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, precision, recall, Jaccard and Dice per image from (N, 4) counts (NaN = undefined)."""
    tp, fp, fn, tn = (counts[:, i].astype(np.float64) for i in range(4))
    return {
        "accuracy": _ratio(tp + tn, tp + fp + fn + tn),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "jaccard": _ratio(tp, tp + fp + fn),
        "dice": _ratio(2 * tp, 2 * tp + fp + fn),
    }


def pooled_iou(counts: np.ndarray) -> float:
    """IoU over all pixels of all images together (Walmsley & Spindler 2023's measure)."""
    tp, fp, fn = counts[:, 0].sum(), counts[:, 1].sum(), counts[:, 2].sum()
    return float(tp / (tp + fp + fn)) if tp + fp + fn else float("nan")


def per_galaxy_table(mangaids: np.ndarray, threshold: int, grid: str, counts: np.ndarray) -> Table:
    """One row per galaxy: identity, threshold, grid, who marks arms, the counts and the metrics."""
    values = scores(counts)
    return Table(
        {
            "MANGAID": np.asarray(mangaids, dtype="U11"),
            "TH": np.full(len(counts), threshold, dtype=np.int16),
            "GRID": np.full(len(counts), grid, dtype="U16"),
            "HAS_ARM_TRUTH": (counts[:, 0] + counts[:, 2]) > 0,
            "HAS_ARM_PRED": (counts[:, 0] + counts[:, 1]) > 0,
            "TP": counts[:, 0],
            "FP": counts[:, 1],
            "FN": counts[:, 2],
            "TN": counts[:, 3],
            **{name.upper(): values[name] for name in METRICS},
        }
    )


def table1(per_galaxy: Table) -> Table:
    """The paper's Table 1 for each (grid, threshold): mean and standard deviation (ddof=1) of
    accuracy, precision and Jaccard over galaxies where volunteers and model both mark arms,
    their number, and the share of galaxies where both mark none; plus pooled IoU over all."""
    rows = []
    for grid in _unique(per_galaxy["GRID"]):
        for th in sorted(set(per_galaxy["TH"][per_galaxy["GRID"] == grid])):
            sel = (per_galaxy["GRID"] == grid) & (per_galaxy["TH"] == th)
            t = per_galaxy[sel]
            both = t["HAS_ARM_TRUTH"] & t["HAS_ARM_PRED"]
            none = ~t["HAS_ARM_TRUTH"] & ~t["HAS_ARM_PRED"]
            row = {
                "GRID": grid,
                "TH": int(th),
                "N_TEST": len(t),
                "N_BOTH_ARMS": int(both.sum()),
                "SHARE_BOTH_NONE": float(none.mean()) if len(t) else np.nan,
            }
            for name in TABLE1_METRICS:
                values = np.asarray(t[name.upper()][both], dtype=np.float64)
                row[f"{name.upper()}_MEAN"] = float(np.mean(values)) if values.size else np.nan
                row[f"{name.upper()}_STD"] = float(np.std(values, ddof=1)) if values.size > 1 else np.nan
            counts = np.stack([t[c] for c in ("TP", "FP", "FN", "TN")], axis=1)
            row["POOLED_IOU"] = pooled_iou(counts)
            rows.append(row)
    return Table(rows=rows)


def detection(per_galaxy: Table, *, grid: str = "train_size") -> Table:
    """Galaxy-level detection per threshold: does the model say arms where volunteers do?"""
    rows = []
    t_all = per_galaxy[per_galaxy["GRID"] == grid]
    for th in sorted(set(t_all["TH"])):
        t = t_all[t_all["TH"] == th]
        truth, pred = np.asarray(t["HAS_ARM_TRUTH"]), np.asarray(t["HAS_ARM_PRED"])
        tp, fp = int((truth & pred).sum()), int((~truth & pred).sum())
        fn, tn = int((truth & ~pred).sum()), int((~truth & ~pred).sum())
        precision = tp / (tp + fp) if tp + fp else np.nan
        recall = tp / (tp + fn) if tp + fn else np.nan
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else np.nan
        rows.append(
            {
                "TH": int(th),
                "TP": tp,
                "FP": fp,
                "FN": fn,
                "TN": tn,
                "PRECISION": precision,
                "RECALL": recall,
                "F1": f1,
            }
        )
    return Table(rows=rows)


def _unique(column) -> list[str]:
    seen: list[str] = []
    for value in column:
        if value not in seen:
            seen.append(str(value))
    return seen


def _fmt(mean: float, std: float) -> str:
    if np.isnan(mean):
        return "-"
    return f"{mean:.2f} ± {std:.2f}" if not np.isnan(std) else f"{mean:.2f}"


def table1_markdown(table: Table, intervals: Table | None = None) -> str:
    """Table 1 as Markdown, one line per grid and threshold; with ``intervals``, the 95% bootstrap
    interval of each mean in brackets."""
    ci = {(str(r["GRID"]), int(r["TH"])): r for r in intervals} if intervals is not None else {}
    lines = [
        "| grid | th | test galaxies | both mark arms | both mark none | accuracy | precision | "
        "Jaccard | pooled IoU |",
        "| --- | ---: | ---: | ---: | ---: | --- | --- | --- | ---: |",
    ]
    for r in table:
        c = ci.get((str(r["GRID"]), int(r["TH"])))
        cells = []
        for m in TABLE1_METRICS:
            cell = _fmt(r[f"{m.upper()}_MEAN"], r[f"{m.upper()}_STD"])
            if c is not None and np.isfinite(c[f"{m.upper()}_MEAN_CI"][0]):
                lo, hi = c[f"{m.upper()}_MEAN_CI"]
                cell += f" [{lo:.2f}, {hi:.2f}]"
            cells.append(cell)
        none = 100 * r["SHARE_BOTH_NONE"]
        lines.append(
            f"| {r['GRID']} | {r['TH']} | {r['N_TEST']} | {r['N_BOTH_ARMS']} | {none:.0f}% | "
            f"{' | '.join(cells)} | {r['POOLED_IOU']:.3f} |"
        )
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- a whole run


@dataclass
class Evaluation:
    """Everything ``galseg evaluate`` computes; figures are drawn from it by ``plots``."""

    per_galaxy: Table
    table1: Table
    detection: Table
    thresholds: tuple[int, ...]
    example_image: np.ndarray  # (S, S, 3) uint8: the test galaxy shown in Figure 4
    example_votes: np.ndarray  # (S, S) vote counts
    example_probabilities: np.ndarray  # (T, S, S)
    example_mangaid: str
    calibration: dict[str, dict[int, Reliability]]  # variant ("plain", "tta") -> threshold -> bins
    vote_fraction: dict[str, Reliability]  # sum of P(votes >= th) / 6 against min(votes, 6) / 6
    intervals: Table
    ceiling_per_galaxy: Table | None = None
    ceiling: Table | None = None

    def ece_table(self) -> Table:
        rows = [
            {"VARIANT": v, "TH": th, "ECE": r.ece}
            for v, by_th in self.calibration.items()
            for th, r in by_th.items()
        ]
        rows += [
            {"VARIANT": f"{v} vote fraction", "TH": 0, "ECE": r.ece} for v, r in self.vote_fraction.items()
        ]
        return Table(rows=rows)


def evaluate_run(
    run: str | os.PathLike[str],
    *,
    dataset: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    full_resolution: bool = True,
    tta: bool = False,
    ceiling: bool = True,
    n_boot: int = 1000,
    batch_size: int = 32,
    device: str = "auto",
    predictor: Predictor | None = None,
    show_progress: bool = True,
) -> Evaluation:
    """Score every threshold of ``run`` on the test split of its dataset (or ``dataset``).

    Metrics are computed on the training grid and, with ``full_resolution``, again on each
    galaxy's original vote map with the probabilities upsampled to it (so numbers compare with
    the paper's whatever size the net ran at). ``tta`` adds the test-time-augmented predictions
    as a second variant; ``ceiling`` scores volunteers and model against leave-one-out consensus
    from the raw outlines (full resolution). Writes catalogues and tables under ``out``.
    """
    predictor = predictor or load(run, device=device)
    data = open_dataset(dataset or predictor.config["dataset"])
    if data.size != predictor.size:
        raise GalsegError(
            f"{data.folder}: prepared at {data.size} px, the run was trained at {predictor.size} px"
        )
    rows = data.indices("test")
    if not len(rows):
        raise GalsegError(f"{data.folder}: the test split is empty")
    images, votes = data.array("images"), data.array("spiral")
    catalogue = data.catalogue[rows]
    mangaids = np.asarray(catalogue["MANGAID"])
    source_dir = Path(data.manifest.get("source_dir", ""))
    originals = full_resolution or ceiling
    if originals and not (source_dir / catalogue["SOURCE_FILE"][0]).is_file():
        full_resolution = ceiling = False  # the original files are not here
    thresholds = predictor.thresholds
    variants = {"plain": "train_size", **({"tta": "train_size+tta"} if tta else {})}
    counts = {(grid, th): [] for grid in (*variants.values(), "full") for th in thresholds}
    calibration = {v: {th: Reliability() for th in thresholds} for v in variants}
    all_six = tuple(thresholds) == tuple(THRESHOLDS)
    vote_fraction = {v: Reliability() for v in variants} if all_six else {}
    ceiling_rows: list[Table] = []
    example = int(np.argmax(np.asarray(catalogue["ARM_FRACTION_TH3"])))
    example_p = None
    chunk = 64
    for start in progress(range(0, len(rows), chunk), label="evaluate", enabled=show_progress):
        idx = rows[start : start + chunk]
        small = np.asarray(images[idx])
        v = np.asarray(votes[idx])
        predictions = {"plain": predictor.probabilities(small, batch_size=batch_size)}
        if tta:
            predictions["tta"] = predictor.tta_probabilities(small, batch_size=batch_size)[0]
        for variant, p in predictions.items():
            for k, th in enumerate(thresholds):
                counts[variants[variant], th].append(confusion(v >= th, p[:, k] > 0.5))
                calibration[variant][th].add(p[:, k], v >= th)
            if all_six:
                vote_fraction[variant].add(p.sum(axis=1) / 6, np.minimum(v, 6) / 6)
        p = predictions["plain"]
        if start <= example < start + chunk:
            example_p = p[example - start]
        if not (full_resolution or ceiling):
            continue
        for j, row in enumerate(catalogue[start : start + chunk]):
            galaxy = None
            drawn = row["MAX_VOTES"] > 0 if "MAX_VOTES" in catalogue.colnames else True
            if ceiling and drawn:
                galaxy = read_gz3d(source_dir / row["SOURCE_FILE"])
            elif full_resolution:
                galaxy = read_gz3d(source_dir / row["SOURCE_FILE"], outlines=False)
            shape = galaxy.spiral_votes.shape if galaxy is not None else None
            p_full = upsample(p[j], shape) if shape else None
            if full_resolution:
                for k, th in enumerate(thresholds):
                    counts["full", th].append(
                        confusion((galaxy.spiral_votes >= th)[None], (p_full[k] > 0.5)[None])
                    )
            if ceiling:
                ceiling_rows.append(_ceiling_rows(row, galaxy, p_full, p[j], thresholds))
    tables = [
        per_galaxy_table(mangaids, th, grid, np.concatenate(c)) for (grid, th), c in counts.items() if c
    ]
    per_galaxy = vstack(tables)
    ceiling_per = vstack(ceiling_rows) if ceiling_rows else None
    evaluation = Evaluation(
        per_galaxy=per_galaxy,
        table1=table1(per_galaxy),
        detection=detection(per_galaxy),
        thresholds=thresholds,
        example_image=np.asarray(images[rows[example]]),
        example_votes=np.asarray(votes[rows[example]]),
        example_probabilities=example_p,
        example_mangaid=str(mangaids[example]),
        calibration=calibration,
        vote_fraction=vote_fraction,
        intervals=table1_intervals(per_galaxy, n_boot=n_boot),
        ceiling_per_galaxy=ceiling_per,
        ceiling=ceiling_table1(ceiling_per) if ceiling_per is not None else None,
    )
    if out is not None:
        write_evaluation(evaluation, out, run=str(run))
    return evaluation


def _ceiling_rows(
    row, galaxy, p_full: np.ndarray | None, p_small: np.ndarray, thresholds: tuple[int, ...]
) -> Table:
    """Ceiling rows of one galaxy; one nobody drew on needs no outlines: every comparison is empty."""
    if galaxy is not None and galaxy.spiral_paths is not None:
        volunteer, model = ceiling_counts(galaxy, p_full, thresholds)
        return ceiling_per_galaxy(str(row["MANGAID"]), thresholds, volunteer, model)
    n = int(row["N_CLASSIFICATIONS"])
    pixels = p_small[0].size
    volunteer = np.zeros((len(thresholds), n, 4), dtype=np.int64)
    volunteer[..., 3] = pixels
    model = volunteer.copy()
    for k in range(len(thresholds)):
        marked = int((p_small[k] > 0.5).sum())  # the model's mask, as counts on its own grid
        model[k, :, 1], model[k, :, 3] = marked, pixels - marked
    return ceiling_per_galaxy(str(row["MANGAID"]), thresholds, volunteer, model)


def write_evaluation(evaluation: Evaluation, out: str | os.PathLike[str], *, run: str) -> None:
    """Catalogues and tables (ECSV), Table 1 and the ceiling table (Markdown), each written whole."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    bins = Table(
        rows=[
            {
                "VARIANT": v,
                "TH": th,
                "BIN": b,
                "CONFIDENCE": r.confidence[b],
                "FREQUENCY": r.frequency[b],
                "PIXELS": int(r.count[b]),
            }
            for v, by_th in evaluation.calibration.items()
            for th, r in by_th.items()
            for b in range(r.bins)
        ]
    )
    tables = {
        "per_galaxy": evaluation.per_galaxy,
        "table1": evaluation.table1,
        "detection": evaluation.detection,
        "table1_intervals": evaluation.intervals,
        "calibration_bins": bins,
        "ece": evaluation.ece_table(),
    }
    if evaluation.ceiling is not None:
        tables["ceiling_per_galaxy"] = evaluation.ceiling_per_galaxy
        tables["ceiling_table1"] = evaluation.ceiling
    for name, table in tables.items():
        table.meta.update({"galseg_version": __version__, "run": run})
        tmp = out / f".{name}.ecsv.part"
        table.write(tmp, format="ascii.ecsv", overwrite=True)
        os.replace(tmp, out / f"{name}.ecsv")
    (out / "table1.md").write_text(table1_markdown(evaluation.table1, evaluation.intervals))
    if evaluation.ceiling is not None:
        (out / "ceiling.md").write_text(ceiling_markdown(evaluation.ceiling))


def ceiling_markdown(table: Table) -> str:
    """The volunteers' Table 1 beside the model's, against the same leave-one-out consensus."""
    lines = [
        "| who | th | galaxies | both mark arms | both mark none | accuracy | precision | Jaccard |",
        "| --- | ---: | ---: | ---: | ---: | --- | --- | --- |",
    ]
    for r in sorted(table, key=lambda r: (r["TH"], r["WHO"] != "volunteer")):
        cells = " | ".join(_fmt(r[f"{m.upper()}_MEAN"], r[f"{m.upper()}_STD"]) for m in TABLE1_METRICS)
        lines.append(
            f"| {r['WHO']} | {r['TH']} | {r['N_GALAXIES']} | {r['N_BOTH_ARMS']} | "
            f"{100 * r['SHARE_BOTH_NONE']:.0f}% | {cells} |"
        )
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- calibration


@dataclass
class Reliability:
    """Streaming reliability statistics of per-pixel probabilities against binary truth.

    Pixels are binned by predicted probability; per bin the mean prediction (confidence) and the
    observed frequency of truth. Expected calibration error = sum over bins of
    (pixels in bin / all pixels) * |frequency - confidence|.
    """

    bins: int = 10

    def __post_init__(self) -> None:
        self.count = np.zeros(self.bins, dtype=np.int64)
        self.sum_p = np.zeros(self.bins)
        self.sum_true = np.zeros(self.bins)

    def add(self, probabilities: np.ndarray, truth: np.ndarray) -> None:
        p = np.asarray(probabilities, dtype=np.float64).ravel()
        index = np.minimum((p * self.bins).astype(np.int64), self.bins - 1)
        self.count += np.bincount(index, minlength=self.bins)
        self.sum_p += np.bincount(index, weights=p, minlength=self.bins)
        self.sum_true += np.bincount(
            index, weights=np.asarray(truth, dtype=np.float64).ravel(), minlength=self.bins
        )

    @property
    def confidence(self) -> np.ndarray:
        return _ratio(self.sum_p, self.count)

    @property
    def frequency(self) -> np.ndarray:
        return _ratio(self.sum_true, self.count)

    @property
    def ece(self) -> float:
        used = self.count > 0
        weights = self.count[used] / self.count.sum()
        return float(np.sum(weights * np.abs(self.frequency[used] - self.confidence[used])))


# ----------------------------------------------------------------------------- bootstrap


def bootstrap_weights(n: int, *, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """(n_boot, n) counts of each galaxy in each resample (resampling galaxies with replacement)."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)


def _interval(samples: np.ndarray) -> tuple[float, float]:
    samples = samples[np.isfinite(samples)]
    if not samples.size:
        return np.nan, np.nan
    lo, hi = np.percentile(samples, [2.5, 97.5])
    return float(lo), float(hi)


def table1_intervals(per_galaxy: Table, *, n_boot: int = 1000, seed: int = 0) -> Table:
    """95% bootstrap intervals over galaxies for every Table 1 entry and detection precision/recall.

    Each resample draws the test galaxies with replacement and recomputes everything on it,
    including which galaxies both mark arms, so the intervals carry that uncertainty too.
    """
    rows = []
    for grid in _unique(per_galaxy["GRID"]):
        for th in sorted(set(per_galaxy["TH"][per_galaxy["GRID"] == grid])):
            t = per_galaxy[(per_galaxy["GRID"] == grid) & (per_galaxy["TH"] == th)]
            w = bootstrap_weights(len(t), n_boot=n_boot, seed=seed)
            truth, pred = np.asarray(t["HAS_ARM_TRUTH"], float), np.asarray(t["HAS_ARM_PRED"], float)
            both = truth * pred
            row = {"GRID": grid, "TH": int(th)}
            n_both = w @ both
            for name in TABLE1_METRICS:
                x = np.nan_to_num(np.asarray(t[name.upper()], float)) * both
                mean = _ratio(w @ x, n_both)
                second = _ratio(w @ (x * x), n_both)
                std = np.sqrt(np.maximum(second - mean**2, 0) * _ratio(n_both, n_both - 1))
                row[f"{name.upper()}_MEAN_CI"] = _interval(mean)
                row[f"{name.upper()}_STD_CI"] = _interval(std)
            row["SHARE_BOTH_NONE_CI"] = _interval((w @ ((1 - truth) * (1 - pred))) / len(t))
            tp, fp, fn = (w @ np.asarray(t[c], float) for c in ("TP", "FP", "FN"))
            row["POOLED_IOU_CI"] = _interval(_ratio(tp, tp + fp + fn))
            row["DETECTION_PRECISION_CI"] = _interval(_ratio(w @ both, w @ pred))
            row["DETECTION_RECALL_CI"] = _interval(_ratio(w @ both, w @ truth))
            rows.append(row)
    table = Table(rows=rows)
    return table


# ----------------------------------------------------------------------------- volunteer ceiling


def volunteer_masks(galaxy) -> list[np.ndarray]:
    """Each volunteer's own mask (pixels inside any of their outlines), on the image grid."""
    shape = galaxy.spiral_votes.shape
    return [rasterise_outlines(paths, shape) > 0 for paths in galaxy.spiral_outlines()]


def ceiling_counts(
    galaxy, probabilities: np.ndarray, thresholds: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-volunteer-out scores of the volunteers and of the model, per threshold.

    For each volunteer v: the consensus of the others is (votes - v's outline count) >= th;
    v's mask and the model's mask are both scored against that same consensus. Returns
    (volunteer counts, model counts), each (T, V, 4) TP, FP, FN, TN.
    """
    drawings = [rasterise_outlines(paths, galaxy.spiral_votes.shape) for paths in galaxy.spiral_outlines()]
    votes = galaxy.spiral_votes
    volunteer = np.zeros((len(thresholds), len(drawings), 4), dtype=np.int64)
    model = np.zeros_like(volunteer)
    if not drawings:
        return volunteer, model
    own = np.stack([d > 0 for d in drawings])
    for k, th in enumerate(thresholds):
        others = np.stack([(votes - d) >= th for d in drawings])
        volunteer[k] = confusion(others, own)
        model[k] = confusion(others, np.broadcast_to(probabilities[k] > 0.5, others.shape))
    return volunteer, model


def ceiling_per_galaxy(
    mangaid: str, thresholds: tuple[int, ...], volunteer: np.ndarray, model: np.ndarray
) -> Table:
    """One row per (who, threshold) for one galaxy, from its leave-one-out comparisons.

    Each volunteer v gives one comparison: truth = the other volunteers' consensus, prediction =
    v's own mask (who = volunteer) or the model's mask (who = model). As in Table 1, metrics count
    only comparisons where both mark arms; the galaxy's value is their mean, N_BOTH how many there
    were, and SHARE_BOTH_NONE the share of comparisons where neither marks arms.
    """
    rows = []
    for who, counts in (("volunteer", volunteer), ("model", model)):
        for k, th in enumerate(thresholds):
            c = counts[k]
            truth_any, pred_any = (c[:, 0] + c[:, 2]) > 0, (c[:, 0] + c[:, 1]) > 0
            both = truth_any & pred_any
            values = scores(c)
            rows.append(
                {
                    "MANGAID": mangaid,
                    "WHO": who,
                    "TH": int(th),
                    "N_VOLUNTEERS": len(c),
                    "N_BOTH": int(both.sum()),
                    "SHARE_BOTH_NONE": float(np.mean(~truth_any & ~pred_any)) if len(c) else np.nan,
                    **{m.upper(): float(np.mean(values[m][both])) if both.any() else np.nan for m in METRICS},
                }
            )
    return Table(rows=rows)


def ceiling_table1(per_galaxy: Table) -> Table:
    """Table 1 of the volunteers and of the model against the same leave-one-out consensus."""
    rows = []
    for who in ("volunteer", "model"):
        for th in sorted(set(per_galaxy["TH"])):
            t = per_galaxy[(per_galaxy["WHO"] == who) & (per_galaxy["TH"] == th)]
            sel = t[t["N_BOTH"] > 0]
            row = {
                "WHO": who,
                "TH": int(th),
                "N_GALAXIES": len(t),
                "N_BOTH_ARMS": len(sel),
                "SHARE_BOTH_NONE": float(np.nanmean(t["SHARE_BOTH_NONE"])) if len(t) else np.nan,
            }
            for name in TABLE1_METRICS:
                values = np.asarray(sel[name.upper()], float)
                row[f"{name.upper()}_MEAN"] = float(values.mean()) if values.size else np.nan
                row[f"{name.upper()}_STD"] = float(values.std(ddof=1)) if values.size > 1 else np.nan
            rows.append(row)
    return Table(rows=rows)
