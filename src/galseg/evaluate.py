"""Evaluation, the stage: a run's networks on its dataset's test split, scored by :mod:`galseg.metrics`.

Reads the prepared arrays and, for full-resolution scores and the human reference, the original
GZ:3D files; runs the networks through :mod:`galseg.inference`; writes the tables.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.table import Table, vstack

from galseg import THRESHOLDS, GalsegError, __version__
from galseg.dataset import open_dataset
from galseg.gz3d import rasterise_outlines, read_gz3d
from galseg.inference import CUT, Predictor, load, upsample
from galseg.io import atomic_path, atomic_write_bytes, progress
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
    highest = {key: [] for key in counts}  # each galaxy's highest probability, for the detection AUC
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
                highest[variants[variant], th].append(p[:, k].reshape(len(p), -1).max(axis=1))
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
                    highest["full", th].append(p_full[k].max()[None])
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
        per_galaxy_table(
            mangaids,
            th,
            grid,
            np.concatenate(c),
            np.concatenate(highest[grid, th]),
        )
        for (grid, th), c in counts.items()
        if c
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
