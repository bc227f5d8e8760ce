"""Per-image metrics from the confusion matrix and their summaries: pure functions of arrays.

No file, network or torch here: :mod:`galseg.evaluate` feeds these with a run's predictions.

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

from dataclasses import dataclass

import numpy as np
from astropy.table import Table
from scipy.stats import mannwhitneyu

from galseg import GalsegError

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
    """numerator / denominator, NaN where the denominator is not positive (any size: the
    bootstrap's weighted sums and the reliability bins' fractions alike)."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), np.nan)


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


def per_galaxy_table(
    mangaids: np.ndarray,
    threshold: int,
    grid: str,
    counts: np.ndarray,
    max_probability: np.ndarray | None = None,
) -> Table:
    """One row per galaxy: identity, threshold, grid, who marks arms, the counts and the metrics;
    ``max_probability``: each galaxy's highest P(votes >= th), for :func:`detection`'s AUC."""
    values = scores(counts)
    if max_probability is None:
        max_probability = np.full(len(counts), np.nan)
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
            "MAX_PROBABILITY": np.asarray(max_probability, dtype=np.float32),
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


def detection_auc(max_probability: np.ndarray, truth: np.ndarray) -> float:
    """How well a galaxy's highest probability ranks the galaxies the volunteers marked above
    those they did not (Mann-Whitney; 0.5: no better than chance). Why: recall and false marks
    at one cut can both look good for a head that marks every bulge; the ranking cannot. NaN
    without a galaxy of each kind or without probabilities."""
    p, truth = np.asarray(max_probability, dtype=np.float64), np.asarray(truth, dtype=bool)
    if not (truth.any() and (~truth).any()) or not np.isfinite(p).all():
        return float("nan")
    return float(mannwhitneyu(p[truth], p[~truth]).statistic / (truth.sum() * (~truth).sum()))


def detection(per_galaxy: Table, *, grid: str = "train_size") -> Table:
    """Galaxy-level detection per threshold: does the model say arms where volunteers do? AUC:
    :func:`detection_auc` (NaN where :func:`per_galaxy_table` was given no probabilities)."""
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
                "AUC": detection_auc(t["MAX_PROBABILITY"], truth),
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


# ----------------------------------------------------------------------------- calibration


@dataclass
class Reliability:
    """Streaming reliability statistics of per-pixel probabilities against binary truth.

    Pixels are binned by predicted probability; per bin the mean prediction (confidence) and the
    observed frequency of truth. Expected calibration error = sum over bins of
    (pixels in bin / all pixels) * abs(frequency - confidence).
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


# ----------------------------------------------------------------------------- human reference


def panel_threshold(threshold: int, panel_size: int, n_volunteers: int) -> int:
    """The threshold for a panel of ``panel_size`` of ``n_volunteers`` that asks the same share of
    people as ``threshold`` asks of all: round(threshold * panel_size / n_volunteers), at least 1."""
    return max(1, int(np.floor(threshold * panel_size / max(n_volunteers, 1) + 0.5)))


def panel_jaccards(
    drawings: np.ndarray,
    model_masks: np.ndarray,
    thresholds: tuple[int, ...],
    *,
    n_splits: int = 10,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint panels of volunteers, against each other and against the model.

    For each random split of the V volunteers into panels A (V // 2) and B (the rest), panel B's
    consensus (outline counts >= the threshold scaled to B's size) is the reference; panel A's
    consensus (scaled likewise) and the model's mask at the full-panel threshold are both scored
    against it, so human and model are compared on the same galaxy, split and reference.

    Parameters
    ----------
    drawings
        (V, H, W) outline counts of each volunteer.
    model_masks
        (T, H, W) bool, the model's masks at ``thresholds``.

    Returns
    -------
    (human, model) Jaccard, each (T, n_splits); NaN where panel B marks no arm (an empty
    panel-A or model mask scores 0 there).
    """
    n = len(drawings)
    human = np.full((len(thresholds), n_splits), np.nan)
    model = np.full_like(human, np.nan)
    if n < 2:
        return human, model
    rng = np.random.default_rng(seed)
    for split in range(n_splits):
        order = rng.permutation(n)
        a, b = order[: n // 2], order[n // 2 :]
        votes_a, votes_b = drawings[a].sum(axis=0), drawings[b].sum(axis=0)
        for k, th in enumerate(thresholds):
            reference = votes_b >= panel_threshold(th, len(b), n)
            if not reference.any():
                continue
            guesses = np.stack([votes_a >= panel_threshold(th, len(a), n), model_masks[k]])
            jaccard = scores(confusion(np.broadcast_to(reference, guesses.shape), guesses))["jaccard"]
            human[k, split], model[k, split] = jaccard
    return human, model


def human_reference_table(per_galaxy: Table, *, n_boot: int = 1000, seed: int = 0) -> Table:
    """Per threshold: mean Jaccard of panel A and of the model against panel B over the same
    galaxies (those where panel B marks arms in some split), their ratio model / human with a 95%
    bootstrap interval over galaxies, and which is higher.

    ``per_galaxy`` has one row per (galaxy, threshold): MANGAID, TH, HUMAN_JACCARD, MODEL_JACCARD
    (each the mean over that galaxy's splits)."""
    rows = []
    for th in sorted(set(per_galaxy["TH"])):
        t = per_galaxy[per_galaxy["TH"] == th]
        human, model = np.asarray(t["HUMAN_JACCARD"], float), np.asarray(t["MODEL_JACCARD"], float)
        both = np.isfinite(human) & np.isfinite(model)
        human, model = human[both], model[both]
        row = {"TH": int(th), "N_GALAXIES": int(both.sum())}
        row["HUMAN_JACCARD"] = float(human.mean()) if human.size else np.nan
        row["MODEL_JACCARD"] = float(model.mean()) if model.size else np.nan
        row["RATIO"] = row["MODEL_JACCARD"] / row["HUMAN_JACCARD"] if row["HUMAN_JACCARD"] > 0 else np.nan
        if human.size:
            w = bootstrap_weights(human.size, n_boot=n_boot, seed=seed)
            row["RATIO_CI"] = _interval(_ratio(w @ model, w @ human))
        else:
            row["RATIO_CI"] = (np.nan, np.nan)
        ratio = row["RATIO"]
        higher = "model" if ratio > 1 else "volunteers" if ratio < 1 else "tie"
        row["HIGHER"] = higher if human.size else ""
        rows.append(row)
    return Table(rows=rows)


def human_reference_markdown(table: Table) -> str:
    """The panel-vs-panel Jaccard beside the model's, per threshold, and which is higher."""
    lines = [
        "| th | galaxies | volunteers (panel A vs B) | model vs panel B | model / volunteers [95%] "
        "| higher |",
        "| ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in table:
        lo, hi = r["RATIO_CI"]
        lines.append(
            f"| {r['TH']} | {r['N_GALAXIES']} | {r['HUMAN_JACCARD']:.3f} | {r['MODEL_JACCARD']:.3f} | "
            f"{r['RATIO']:.2f} [{lo:.2f}, {hi:.2f}] | {r['HIGHER']} |"
        )
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- real galaxies


def real_summary(per_galaxy: Table) -> Table:
    """Per threshold: arm recall and precision against SpArcFiRe (mean over its non-weak galaxies,
    and pooled), the median arm-over-disc ranking (``ARM_AUC``, whatever the cut-off), share of
    Galaxy Zoo spirals and of smooth galaxies given arms, pitch and winding against SpArcFiRe
    where both measured, and the arm count against Galaxy Zoo's most-voted arm number where both
    exist. The rows of one cut-off (``CUT``) at a time."""
    if "CUT" in per_galaxy.colnames and len(set(per_galaxy["CUT"])) > 1:
        raise GalsegError("real_summary: rows of several cut-offs; select one CUT first")
    rows = []
    for th in sorted(set(per_galaxy["TH"])):
        t = per_galaxy[per_galaxy["TH"] == th]
        ref = t[t["REF_PX"] > 0]
        recall = _mean_ratio(ref["MATCHED_REF_PX"], ref["REF_PX"])
        precision = _mean_ratio(ref["MATCHED_MASK_PX"], ref["ARM_PIXELS"])
        spirals, smooth = t[t["KIND"] == "spiral"], t[t["KIND"] == "smooth"]
        measured = ref[(ref["CHIRALITY"] != "") & np.isfinite(np.asarray(ref["PITCH_DEG"], float))]
        counted = t[(t["REF_ARMS"] > 0) & (t["ARM_COUNT"] > 0)]
        # Galaxy Zoo's "more than four" (5) agrees with five or six
        agrees = (counted["ARM_COUNT"] == counted["REF_ARMS"]) | (
            (counted["REF_ARMS"] == 5) & (counted["ARM_COUNT"] >= 5)
        )
        rows.append(
            {
                "TH": int(th),
                "N_REFERENCE": len(ref),
                "RECALL": recall,
                "PRECISION": precision,
                "POOLED_RECALL": float(ref["MATCHED_REF_PX"].sum() / max(ref["REF_PX"].sum(), 1)),
                "POOLED_PRECISION": float(ref["MATCHED_MASK_PX"].sum() / max(ref["ARM_PIXELS"].sum(), 1)),
                "ARM_AUC": float(np.nanmedian(ref["ARM_AUC"]))
                if np.isfinite(np.asarray(ref["ARM_AUC"], float)).any()
                else np.nan,
                "N_SPIRAL": len(spirals),
                "SPIRALS_WITH_ARMS": float(np.mean(spirals["HAS_ARMS"])) if len(spirals) else np.nan,
                "N_SMOOTH": len(smooth),
                "SMOOTH_WITH_ARMS": float(np.mean(smooth["HAS_ARMS"])) if len(smooth) else np.nan,
                "N_PITCH": len(measured),
                "MEDIAN_PITCH_ERROR_DEG": float(
                    np.median(
                        np.abs(np.asarray(measured["PITCH_DEG"]) - np.asarray(measured["REF_PITCH_DEG"]))
                    )
                )
                if len(measured)
                else np.nan,
                "WINDING_AGREEMENT": float(np.mean(measured["CHIRALITY"] == measured["REF_CHIRALITY"]))
                if len(measured)
                else np.nan,
                "N_COUNT": len(counted),
                "ARM_COUNT_AGREEMENT": float(np.mean(agrees)) if len(counted) else np.nan,
                **ring_ranking(ref),
            }
        )
    return Table(rows=rows)


RING_COLUMNS = (
    "RING_AUC",
    "RING_AUC_LO",
    "RING_AUC_HI",
    "BRIGHTNESS_RING_AUC",
    "BEATS_BRIGHTNESS",
    "BEATS_BRIGHTNESS_LO",
    "BEATS_BRIGHTNESS_HI",
    "HIGHPASS_RING_AUC",
)


def ring_ranking(reference_rows: Table, *, n_boot: int = 1000, seed: int = 0) -> dict[str, float]:
    """Arms against the disc between them at the same radius, over the galaxies with a reference
    where both rankings exist: the network's mean ``RING_AUC`` and the image brightness's, the
    share of galaxies where the network ranks better, and 95% bootstrap intervals of the first
    and the last (a handful of galaxies: the interval is the message); beside them the mean
    ranking of the image less its smooth light (``HIGHPASS_RING_AUC``), where measured."""
    if "RING_AUC" not in reference_rows.colnames:  # tables from before the ring ranking
        return {}
    net = np.asarray(reference_rows["RING_AUC"], float)
    light = np.asarray(reference_rows["BRIGHTNESS_RING_AUC"], float)
    usable = np.isfinite(net) & np.isfinite(light)
    filtered = (
        np.asarray(reference_rows["HIGHPASS_RING_AUC"], float)[usable]
        if "HIGHPASS_RING_AUC" in reference_rows.colnames  # tables from before the filter's
        else np.full(int(usable.sum()), np.nan)
    )
    net, light = net[usable], light[usable]
    out = {"N_RING": int(usable.sum())}
    if not usable.any():
        return out | dict.fromkeys(RING_COLUMNS, np.nan)
    # the same resampling of galaxies as Table 1's and the human reference's intervals
    weights = bootstrap_weights(len(net), n_boot=n_boot, seed=seed) / len(net)
    (auc_lo, auc_hi), (beats_lo, beats_hi) = _interval(weights @ net), _interval(weights @ (net > light))
    return out | {
        "RING_AUC": float(net.mean()),
        "RING_AUC_LO": auc_lo,
        "RING_AUC_HI": auc_hi,
        "BRIGHTNESS_RING_AUC": float(light.mean()),
        "BEATS_BRIGHTNESS": float(np.mean(net > light)),
        "BEATS_BRIGHTNESS_LO": beats_lo,
        "BEATS_BRIGHTNESS_HI": beats_hi,
        "HIGHPASS_RING_AUC": float(np.nanmean(filtered)) if np.isfinite(filtered).any() else np.nan,
    }


def _mean_ratio(numerator, denominator) -> float:
    """Mean of the per-galaxy ratios where the denominator is positive (NaN if none is)."""
    ratios = _ratio(numerator, denominator)
    return float(np.nanmean(ratios)) if np.isfinite(ratios).any() else np.nan


def _share(row, share: str, count: str) -> str:
    """A share over n galaxies as "k of n" ("-" for none)."""
    if not row[count]:
        return "-"
    return f"{round(row[share] * row[count])} of {row[count]}"


def ring_text(row) -> str:
    """The same-radius ranking of one real-summary row, as network / brightness and the share."""
    if "RING_AUC" not in row.colnames or not np.isfinite(row["RING_AUC"]):
        return "-"
    return (
        f"{row['RING_AUC']:.2f} [{row['RING_AUC_LO']:.2f}, {row['RING_AUC_HI']:.2f}] / "
        f"{row['BRIGHTNESS_RING_AUC']:.2f}, "
        f"{round(row['BEATS_BRIGHTNESS'] * row['N_RING'])} of {row['N_RING']} "
        f"[{100 * row['BEATS_BRIGHTNESS_LO']:.0f}-{100 * row['BEATS_BRIGHTNESS_HI']:.0f}%]"
        + (
            f"; filter {row['HIGHPASS_RING_AUC']:.2f}"
            if "HIGHPASS_RING_AUC" in row.colnames and np.isfinite(row["HIGHPASS_RING_AUC"])
            else ""
        )
    )


def real_markdown(summary: Table) -> str:
    """The real-image check as a Markdown table, one line per threshold."""
    lines = [
        "| th | arm recall (mean / pooled) | arm precision (mean / pooled) | arms above disc (AUC) | "
        "same radius: network / brightness, network better; filter | "
        "spirals with arms | smooth with arms | median pitch error | winding agrees | arm count agrees |",
        "| ---: | --- | --- | ---: | --- | --- | --- | --- | --- | --- |",
    ]
    for r in summary:
        lines.append(
            f"| {r['TH']} | {r['RECALL']:.2f} / {r['POOLED_RECALL']:.2f} | "
            f"{r['PRECISION']:.2f} / {r['POOLED_PRECISION']:.2f} | {r['ARM_AUC']:.2f} | {ring_text(r)} | "
            f"{100 * r['SPIRALS_WITH_ARMS']:.0f}% of {r['N_SPIRAL']} | "
            f"{100 * r['SMOOTH_WITH_ARMS']:.0f}% of {r['N_SMOOTH']} | "
            f"{r['MEDIAN_PITCH_ERROR_DEG']:.1f} deg ({r['N_PITCH']}) | {100 * r['WINDING_AGREEMENT']:.0f}% | "
            f"{_share(r, 'ARM_COUNT_AGREEMENT', 'N_COUNT')} |"
        )
    return "\n".join(lines) + "\n"
