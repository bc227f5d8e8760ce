"""Evaluation, the stage: a run's networks on its dataset's test split, scored by :mod:`galseg.metrics`.

Reads the prepared arrays and, for full-resolution scores and the human reference, the original
GZ:3D files; runs the networks through :mod:`galseg.inference`; writes the tables.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.table import Table, vstack
from scipy import ndimage
from scipy.stats import mannwhitneyu
from skimage.morphology import convex_hull_image

from galseg import THRESHOLDS, GalsegError, __version__
from galseg.arms import agreement_map, count_arms, geometry_and_light, measure_arms
from galseg.dataset import open_dataset
from galseg.gz3d import rasterise_outlines, read_gz3d
from galseg.inference import CUT, Predictor, check_cut, load, upsample
from galseg.io import atomic_path, atomic_write_bytes, progress, read_picture
from galseg.metrics import (
    Reliability,
    confusion,
    detection,
    human_reference_markdown,
    human_reference_table,
    panel_jaccards,
    per_galaxy_table,
    table1,
    table1_intervals,
    table1_markdown,
)


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
    selection: str = ""
    """How the evaluated epoch was chosen (from the run's config), stated beside every table."""
    human_per_galaxy: Table | None = None
    human_reference: Table | None = None
    structure: str = "spiral"

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
    human: bool = True,
    n_splits: int = 10,
    n_boot: int = 1000,
    batch_size: int = 32,
    device: str = "auto",
    predictor: Predictor | None = None,
    show_progress: bool = True,
    structure: str = "spiral",
) -> Evaluation:
    """Score every threshold of ``run`` on the test split of its dataset (or ``dataset``), for
    one ``structure`` (spiral arms, or the bar of a run that segments bars).

    Metrics are computed on the training grid and, with ``full_resolution``, again on each
    galaxy's original vote map with the probabilities upsampled to it (so numbers compare with
    the paper's whatever size the net ran at). ``tta`` adds the test-time-augmented predictions
    as a second variant; ``human`` adds the human reference (:func:`metrics.panel_jaccards`,
    ``n_splits`` random panel splits per galaxy, full resolution, from the raw outlines).
    Writes catalogues and tables under ``out``.
    """
    predictor = (predictor or load(run, device=device)).only(structure)
    data = open_dataset(dataset or predictor.config["dataset"])
    if data.size != predictor.size:
        raise GalsegError(
            f"{data.folder}: prepared at {data.size} px, the run was trained at {predictor.size} px"
        )
    rows = data.indices("test")
    if not len(rows):
        raise GalsegError(f"{data.folder}: the test split is empty")
    images, votes = data.array("images"), data.array(structure)
    catalogue = data.catalogue[rows]
    mangaids = np.asarray(catalogue["MANGAID"])
    source_dir = Path(data.manifest.get("source_dir", ""))
    originals = full_resolution or human
    if originals and not (source_dir / catalogue["SOURCE_FILE"][0]).is_file():
        full_resolution = human = False  # the original files are not here
    thresholds = predictor.thresholds
    variants = {"plain": "train_size", **({"tta": "train_size+tta"} if tta else {})}
    counts = {(grid, th): [] for grid in (*variants.values(), "full") for th in thresholds}
    calibration = {v: {th: Reliability() for th in thresholds} for v in variants}
    all_six = tuple(thresholds) == tuple(THRESHOLDS)
    vote_fraction = {v: Reliability() for v in variants} if all_six else {}
    human_rows: list[dict] = []
    # the test galaxy with the most marked pixels at th=3 is the one shown (Figure 4)
    fraction = {"spiral": "ARM_FRACTION_TH3", "bar": "BAR_FRACTION_TH3"}[structure]
    example = int(np.argmax(np.asarray(catalogue[fraction]))) if fraction in catalogue.colnames else 0
    most = {"spiral": "MAX_VOTES", "bar": "BAR_MAX_VOTES"}[structure]
    example_p = None
    chunk = 64
    for start in progress(range(0, len(rows), chunk), desc="evaluate", enabled=show_progress):
        idx = rows[start : start + chunk]
        small = np.asarray(images[idx])
        v = np.asarray(votes[idx])
        predictions = {"plain": predictor.probabilities(small, batch_size=batch_size)}
        if tta:
            predictions["tta"] = predictor.tta_probabilities(small, batch_size=batch_size)[0]
        for variant, p in predictions.items():
            for k, th in enumerate(thresholds):
                counts[variants[variant], th].append(confusion(v >= th, p[:, k] > CUT))
                calibration[variant][th].add(p[:, k], v >= th)
            if all_six:
                vote_fraction[variant].add(p.sum(axis=1) / 6, np.minimum(v, 6) / 6)
        p = predictions["plain"]
        if start <= example < start + chunk:
            example_p = p[example - start]
        if not (full_resolution or human):
            continue
        for j, row in enumerate(catalogue[start : start + chunk]):
            drawn = row[most] > 0 if most in catalogue.colnames else True
            if not (full_resolution or drawn):
                continue  # nobody drew on it: no panel marks arms, nothing to compare
            galaxy = read_gz3d(source_dir / row["SOURCE_FILE"], outlines=human and drawn)
            full_votes = galaxy.spiral_votes if structure == "spiral" else galaxy.bar_votes
            p_full = upsample(p[j], full_votes.shape)
            if full_resolution:
                for k, th in enumerate(thresholds):
                    counts["full", th].append(confusion((full_votes >= th)[None], (p_full[k] > CUT)[None]))
            if human and drawn:
                mangaid = str(row["MANGAID"])
                people, machine = panel_jaccards(
                    volunteer_drawings(galaxy, structure),
                    p_full > CUT,
                    thresholds,
                    n_splits=n_splits,
                    seed=_galaxy_seed(mangaid),
                )
                for k, th in enumerate(thresholds):
                    defined = np.isfinite(people[k])
                    human_rows.append(
                        {
                            "MANGAID": mangaid,
                            "TH": int(th),
                            "N_SPLITS": int(defined.sum()),
                            "HUMAN_JACCARD": float(people[k][defined].mean()) if defined.any() else np.nan,
                            "MODEL_JACCARD": float(machine[k][defined].mean()) if defined.any() else np.nan,
                        }
                    )
    tables = [
        per_galaxy_table(mangaids, th, grid, np.concatenate(c)) for (grid, th), c in counts.items() if c
    ]
    per_galaxy = vstack(tables)
    human_per = Table(rows=human_rows) if human_rows else None
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
        selection=selection_rule(predictor.config),
        human_per_galaxy=human_per,
        human_reference=human_reference_table(human_per, n_boot=n_boot) if human_per is not None else None,
        structure=structure,
    )
    if out is not None:
        write_evaluation(evaluation, out, run=str(run))
    return evaluation


def selection_rule(config: dict) -> str:
    """In words, how the run chose the epoch that is evaluated."""
    rule = config.get("select_on", "test")  # runs made before the validation split chose on test
    if rule == "validation":
        return "lowest loss on the validation galaxies (carved from the training share; test untouched)"
    if rule == "test":
        return "lowest loss on the test galaxies themselves (the paper's choice; optimistic)"
    return f"lowest loss on the {rule} galaxies"


def write_evaluation(evaluation: Evaluation, out: str | os.PathLike[str], *, run: str) -> None:
    """Catalogues and tables (ECSV), Table 1 and the human reference (Markdown), each written whole."""
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
    if evaluation.human_reference is not None:
        tables["human_per_galaxy"] = evaluation.human_per_galaxy
        tables["human_reference"] = evaluation.human_reference
    for name, table in tables.items():
        table.meta.update({"galseg_version": __version__, "run": run, "selection": evaluation.selection})
        with atomic_path(out / f"{name}.ecsv") as tmp:
            table.write(tmp, format="ascii.ecsv", overwrite=True)
    note = f"Epoch chosen on: {evaluation.selection}.\n\n"
    atomic_write_bytes(
        out / "table1.md", (note + table1_markdown(evaluation.table1, evaluation.intervals)).encode()
    )
    if evaluation.human_reference is not None:
        atomic_write_bytes(
            out / "human_reference.md", (note + human_reference_markdown(evaluation.human_reference)).encode()
        )


def volunteer_drawings(galaxy, structure: str = "spiral") -> np.ndarray:
    """(V, H, W) uint8: each volunteer's outlines (HDU 9, or HDU 10 for the bar) rasterised on
    the image grid."""
    shape = galaxy.spiral_votes.shape
    outlines = galaxy.spiral_outlines() if structure == "spiral" else galaxy.bar_outlines()
    drawings = np.zeros((len(outlines), *shape), dtype=np.uint8)
    for v, paths in enumerate(outlines):
        drawings[v] = rasterise_outlines(paths, shape)
    return drawings


def _galaxy_seed(mangaid: str) -> int:
    """A fixed seed per galaxy, so its panel splits do not depend on the order of evaluation."""
    return int.from_bytes(hashlib.sha256(mangaid.encode()).digest()[:8], "big")


# ----------------------------------------------------------------------------- real galaxies

REAL_TOLERANCE_NET_PX = 3
"""A predicted arm pixel matches a reference arm when it lies within this many pixels of the
network's own grid (scaled to each image's size): references are thin arcs, masks are ribbons."""


@dataclass(frozen=True)
class RealGalaxy:
    """One real cutout of ``shared/real``: its image, what it is, and any reference."""

    path: Path
    name: str
    kind: str  # "spiral", "smooth" or "other" (edge-on, unsure: reported, not scored)
    arm_mask: Path | None = None  # SpArcFiRe's arm mask, for the non-weak SpArcFiRe galaxies
    pitch_deg: float = np.nan  # SpArcFiRe's |pitch| of the dominant winding
    chirality: str = ""
    n_arms: int = -1  # Galaxy Zoo's most-voted arm number (5: more than four; -1: none, can't tell)


ARM_NUMBER_ANSWERS = {
    "decals": [f"spiral-arm-count_{a}_fraction" for a in ("1", "2", "3", "4", "more-than-4", "cant-tell")],
    "gz2": [
        f"t11_arms_number_{a}_fraction"
        for a in ("a31_1", "a32_2", "a33_3", "a34_4", "a36_more_than_4", "a37_cant_tell")
    ],
    "kaggle": [f"Class11.{a}" for a in range(1, 7)],
}
"""Galaxy Zoo's "how many spiral arms" answers per catalogue: one, two, three, four, more than
four, can't tell (a catalogue without the last has no such column)."""


def _arm_number(row, answers: list[str]) -> int:
    """The most-voted arm number of one Galaxy Zoo row (5 for more than four), -1 where nobody
    answered or "can't tell" won."""
    if row is None:
        return -1
    shares = [float(row[a]) if a in row.colnames and np.isfinite(float(row[a])) else 0.0 for a in answers]
    best = int(np.argmax(shares))
    return -1 if shares[best] <= 0 or best == 5 else best + 1


def _votes(table: Table, key: str, value: str) -> Table | None:
    rows = table[np.char.strip(np.asarray(table[key], dtype=str)) == value]
    return rows[0] if len(rows) else None


def real_galaxies(folder: str | os.PathLike[str]) -> list[RealGalaxy]:
    """The real cutouts with their labels: SpArcFiRe's non-weak arm masks (spirals), and the
    colour cutouts as spiral or smooth by their Galaxy Zoo vote fractions (majority, > 0.5)."""
    folder = Path(folder)
    galaxies = []
    index = folder / "sparcfire" / "index.csv"
    if index.is_file():
        for row in Table.read(index, format="ascii.csv"):
            weak = int(row["weak"]) == 1
            galaxies.append(
                RealGalaxy(
                    folder / "sparcfire" / str(row["image"]),
                    str(row["name"]),
                    "other" if weak else "spiral",
                    None if weak else folder / "sparcfire" / str(row["armmask"]),
                    abs(float(row["pa_alenWtd_avg_domChiralityOnly"])),
                    str(row["chirality"]),
                )
            )
    colour = folder / "colour"
    decals = [
        colour / "gz_decals" / f for f in ("gz_decals_volunteers_5.csv", "gz_decals_volunteers_1_and_2.csv")
    ]
    decals = [Table.read(p, format="ascii.csv") for p in decals if p.is_file()]
    for png in sorted((colour / "gz_decals").glob("*.png")):
        row = next((r for t in decals if (r := _votes(t, "iauname", png.stem)) is not None), None)
        kind = "other"
        if row is not None:
            featured = row["smooth-or-featured_featured-or-disk_fraction"]
            spiral = featured * row["disk-edge-on_no_fraction"] * row["has-spiral-arms_yes_fraction"]
            kind = (
                "spiral"
                if spiral > 0.5
                else "smooth"
                if row["smooth-or-featured_smooth_fraction"] > 0.5
                else kind
            )
        n_arms = _arm_number(row, ARM_NUMBER_ANSWERS["decals"]) if kind == "spiral" else -1
        galaxies.append(RealGalaxy(png, f"decals {png.stem}", kind, n_arms=n_arms))
    if (colour / "gz2" / "gz2_hart16.csv").is_file():
        hart = Table.read(colour / "gz2" / "gz2_hart16.csv", format="ascii.csv")
        mapping = Table.read(colour / "gz2" / "gz2_filename_mapping.csv", format="ascii.csv")
        for png in sorted((colour / "gz2").glob("*.png")):
            asset = _votes(mapping, "asset_id", png.stem)
            row = _votes(hart, "dr7objid", str(asset["objid"])) if asset is not None else None
            label = str(row["gz2_class"]) if row is not None else ""
            kind = "spiral" if label.startswith("S") and not label.startswith("Se") else "other"
            kind = "smooth" if label.startswith("E") else kind
            n_arms = _arm_number(row, ARM_NUMBER_ANSWERS["gz2"]) if kind == "spiral" else -1
            galaxies.append(RealGalaxy(png, f"gz2 {png.stem}", kind, n_arms=n_arms))
    if (colour / "gz_kaggle" / "training_solutions_rev1.csv").is_file():
        kaggle = Table.read(colour / "gz_kaggle" / "training_solutions_rev1.csv", format="ascii.csv")
        for png in sorted((colour / "gz_kaggle").glob("*.png")):
            row = _votes(kaggle, "GalaxyID", png.stem)
            kind = "other"
            if row is not None:  # Class4.1: spiral arms, as a share of all volunteers
                kind = "spiral" if row["Class4.1"] > 0.5 else "smooth" if row["Class1.1"] > 0.5 else kind
            n_arms = _arm_number(row, ARM_NUMBER_ANSWERS["kaggle"]) if kind == "spiral" else -1
            galaxies.append(RealGalaxy(png, f"kaggle {png.stem}", kind, n_arms=n_arms))
    return galaxies


def _near(mask: np.ndarray, reference: np.ndarray, tolerance: float) -> tuple[int, int, int, int]:
    """(mask pixels near the reference, mask pixels, reference pixels near the mask, reference pixels)."""
    to_reference = (
        ndimage.distance_transform_edt(~reference) if reference.any() else np.full(mask.shape, np.inf)
    )
    to_mask = ndimage.distance_transform_edt(~mask) if mask.any() else np.full(mask.shape, np.inf)
    return (
        int((mask & (to_reference <= tolerance)).sum()),
        int(mask.sum()),
        int((reference & (to_mask <= tolerance)).sum()),
        int(reference.sum()),
    )


def inter_arm_disc(reference: np.ndarray, tolerance: float) -> np.ndarray:
    """The disc between a reference's arms: pixels inside the arms' convex hull farther than
    ``tolerance`` from any arm. Sky and the galaxy's outskirts are left out, where any map
    brighter on the galaxy would rank below the arms."""
    if not reference.any():
        return np.zeros_like(reference)
    return convex_hull_image(reference) & (ndimage.distance_transform_edt(~reference) > tolerance)


def arm_auc(probability: np.ndarray, reference: np.ndarray, between: np.ndarray) -> float:
    """How well a probability map ranks the reference's arm pixels above the disc between them
    (``between``: :func:`inter_arm_disc`), whatever its cut-off: the ROC area of the arm pixels
    against those (0.5: no better than chance, 1: every arm pixel above every inter-arm pixel).
    NaN where either set is empty."""
    if not reference.any() or not between.any():
        return np.nan
    arm, disc = probability[reference], probability[between]
    return float(mannwhitneyu(arm, disc).statistic / (arm.size * disc.size))


def evaluate_real(
    predictor: Predictor,
    folder: str | os.PathLike[str],
    *,
    measure: bool = True,
    cuts: Sequence[float] | None = None,
) -> Table:
    """Predict every real cutout and score it: per galaxy, cut-off and threshold (pixels above the
    cut), whether arms were found, and against SpArcFiRe's arm masks the matched pixels (within
    :data:`REAL_TOLERANCE_NET_PX` network pixels) and the arm-over-disc ranking (:func:`arm_auc`),
    plus the measured pitch and winding beside SpArcFiRe's and the arm count beside Galaxy Zoo's
    volunteers' (``REF_ARMS``). ``cuts``: probability cut-offs scored
    side by side from one prediction of each image (the ``CUT`` column); by default the
    predictor's own."""
    predictor = predictor.only("spiral")  # the references are arms; a run's bar head is not scored
    cuts = [predictor.cut] if cuts is None else [check_cut(c) for c in cuts]
    rows = []
    for galaxy in real_galaxies(folder):
        image = read_picture(galaxy.path)
        probabilities = predictor.predict_image(image)
        if measure and (probabilities > min(cuts)).any():  # one geometry and light for every mask
            geometry, light = geometry_and_light(image)
        reference = np.asarray(read_picture(galaxy.arm_mask))[..., 0] > 127 if galaxy.arm_mask else None
        tolerance = REAL_TOLERANCE_NET_PX * max(image.shape[:2]) / predictor.size
        if reference is not None:  # the ranking does not depend on the cut
            between = inter_arm_disc(reference, tolerance)
            aucs = [arm_auc(plane, reference, between) for plane in probabilities]
        for cut in cuts:
            marked = probabilities > cut
            count = count_arms(agreement_map(marked), geometry) if measure and marked.any() else -1
            for k, th in enumerate(predictor.thresholds):
                mask = marked[k]
                row = {
                    "NAME": galaxy.name,
                    "KIND": galaxy.kind,
                    "CUT": cut,
                    "TH": int(th),
                    "ARM_PIXELS": int(mask.sum()),
                    "HAS_ARMS": bool(mask.any()),
                    "MATCHED_MASK_PX": -1,
                    "MATCHED_REF_PX": -1,
                    "REF_PX": -1,
                    "ARM_AUC": np.nan,
                    "PITCH_DEG": np.nan,
                    "CHIRALITY": "",
                    "REF_PITCH_DEG": galaxy.pitch_deg,
                    "REF_CHIRALITY": galaxy.chirality,
                    "ARM_COUNT": count if mask.any() else -1,  # every level at once, as galseg predict
                    "REF_ARMS": galaxy.n_arms,
                }
                if reference is not None:
                    near = _near(mask, reference, tolerance)
                    row.update(MATCHED_MASK_PX=near[0], MATCHED_REF_PX=near[2], REF_PX=near[3])
                    row["ARM_AUC"] = aucs[k]
                if measure and mask.any():
                    summary = measure_arms(mask, image, geometry=geometry, light=light, count=count)[1]
                    row.update(PITCH_DEG=summary.pitch_deg, CHIRALITY=summary.chirality)
                rows.append(row)
    return Table(rows=rows)


def real_examples(predictor: Predictor, folder: str | os.PathLike[str], *, count: int = 12) -> dict:
    """Inputs of the real-galaxies figure: every third labelled cutout (spirals and smooth ones
    alike, not the best), with P(votes >= 1) and P(votes >= 3), any SpArcFiRe arm mask, and the
    predictor's cut."""
    predictor = predictor.only("spiral")
    chosen = [g for g in real_galaxies(folder) if g.kind in ("spiral", "smooth")][::3][:count]
    planes = [predictor.thresholds.index(t) for t in (1, 3) if t in predictor.thresholds]
    images = [read_picture(g.path) for g in chosen]
    return {
        "images": images,
        "probabilities": [predictor.predict_image(image)[planes] for image in images],
        "references": [read_picture(g.arm_mask)[..., 0] > 127 if g.arm_mask else None for g in chosen],
        "titles": [f"{g.name[-22:]} ({g.kind})" for g in chosen],
        "cut": predictor.cut,
    }
