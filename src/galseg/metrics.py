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

from galseg import GalsegError, __version__
from galseg.dataset import open_dataset
from galseg.gz3d import read_gz3d
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
            "GRID": np.full(len(counts), grid, dtype="U10"),
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


def table1_markdown(table: Table) -> str:
    """Table 1 as Markdown, one line per grid and threshold."""
    lines = [
        "| grid | th | test galaxies | both mark arms | both mark none | accuracy | precision | "
        "Jaccard | pooled IoU |",
        "| --- | ---: | ---: | ---: | ---: | --- | --- | --- | ---: |",
    ]
    for r in table:
        none = 100 * r["SHARE_BOTH_NONE"]
        head = f"| {r['GRID']} | {r['TH']} | {r['N_TEST']} | {r['N_BOTH_ARMS']} | {none:.0f}% | "
        body = " | ".join(_fmt(r[f"{m.upper()}_MEAN"], r[f"{m.upper()}_STD"]) for m in TABLE1_METRICS)
        lines.append(f"{head}{body} | {r['POOLED_IOU']:.3f} |")
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


def evaluate_run(
    run: str | os.PathLike[str],
    *,
    dataset: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    full_resolution: bool = True,
    batch_size: int = 32,
    device: str = "auto",
    predictor: Predictor | None = None,
    show_progress: bool = True,
) -> Evaluation:
    """Score every threshold of ``run`` on the test split of its dataset (or ``dataset``).

    Metrics are computed on the training grid and, with ``full_resolution``, again on each
    galaxy's original vote map with the probabilities upsampled to it (so numbers compare with
    the paper's whatever size the net ran at). Writes catalogues and Table 1 under ``out``.
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
    mangaids = np.asarray(data.catalogue["MANGAID"])[rows]
    sources = np.asarray(data.catalogue["SOURCE_FILE"])[rows]
    source_dir = Path(data.manifest.get("source_dir", ""))
    if full_resolution and not (source_dir / sources[0]).is_file():
        full_resolution = False  # the original files are not here; say so in the table
    counts = {(grid, th): [] for grid in ("train_size", "full") for th in predictor.thresholds}
    truth_fraction = np.asarray(data.catalogue["ARM_FRACTION_TH3"])[rows]
    example = int(np.argmax(truth_fraction))
    example_p = None
    chunk = 64
    for start in progress(range(0, len(rows), chunk), label="evaluate", enabled=show_progress):
        idx = rows[start : start + chunk]
        p = predictor.probabilities(np.asarray(images[idx]), batch_size=batch_size)
        v = np.asarray(votes[idx])
        for k, th in enumerate(predictor.thresholds):
            counts["train_size", th].append(confusion(v >= th, p[:, k] > 0.5))
        if start <= example < start + chunk:
            example_p = p[example - start]
        if full_resolution:
            for j, source in enumerate(sources[start : start + chunk]):
                full_votes = read_gz3d(source_dir / source, outlines=False).spiral_votes
                p_full = upsample(p[j], full_votes.shape)
                for k, th in enumerate(predictor.thresholds):
                    counts["full", th].append(confusion((full_votes >= th)[None], (p_full[k] > 0.5)[None]))
    tables = [
        per_galaxy_table(mangaids, th, grid, np.concatenate(c)) for (grid, th), c in counts.items() if c
    ]
    per_galaxy = vstack(tables)
    summary = table1(per_galaxy)
    evaluation = Evaluation(
        per_galaxy=per_galaxy,
        table1=summary,
        detection=detection(per_galaxy),
        thresholds=predictor.thresholds,
        example_image=np.asarray(images[rows[example]]),
        example_votes=np.asarray(votes[rows[example]]),
        example_probabilities=example_p,
        example_mangaid=str(mangaids[example]),
    )
    if out is not None:
        write_evaluation(evaluation, out, run=str(run))
    return evaluation


def write_evaluation(evaluation: Evaluation, out: str | os.PathLike[str], *, run: str) -> None:
    """Catalogues (ECSV) and Table 1 (Markdown and ECSV), each written whole or not at all."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, table in (
        ("per_galaxy", evaluation.per_galaxy),
        ("table1", evaluation.table1),
        ("detection", evaluation.detection),
    ):
        table.meta.update({"galseg_version": __version__, "run": run})
        tmp = out / f".{name}.ecsv.part"
        table.write(tmp, format="ascii.ecsv", overwrite=True)
        os.replace(tmp, out / f"{name}.ecsv")
    (out / "table1.md").write_text(table1_markdown(evaluation.table1))
