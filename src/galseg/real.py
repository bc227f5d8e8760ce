"""The real check: networks trained on synthetic galaxies, scored on real images they never saw.

Two kinds of real image (``shared/real``; for choosing, never for training): survey cutouts with
reference arms (SpArcFiRe's arm masks, pitch and winding; Galaxy Zoo's spiral / smooth votes and
arm counts), and real GZ:3D files with the volunteers' own masks and the MaNGA hexagon burned in.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.table import Table
from scipy import ndimage
from scipy.stats import mannwhitneyu
from skimage.morphology import convex_hull_image

from galseg.arms import agreement_map, count_arms, geometry_and_light, measure_arms
from galseg.gz3d import hexagon_distance, ifu_design_size, read_gz3d
from galseg.inference import Predictor, check_cut
from galseg.io import read_picture

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


RING_BINS = 6
"""Elliptical rings of equal arm-and-disc pixel count in which arms are ranked against the disc."""
MIN_RING_PX = 20
"""A ring needs this many arm and inter-arm pixels each to be scored."""


def disc_radius(shape: tuple[int, int], geometry) -> np.ndarray:
    """Each pixel's radius in the disc plane (pixels along the major axis), by the disc geometry
    the arms are measured with: rings of it are ellipses on the image."""
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    dx, dy = x - geometry.x, geometry.y - y  # y up, as the position angle is measured
    c, s = np.cos(geometry.position_angle), np.sin(geometry.position_angle)
    q = float(np.clip(geometry.axis_ratio, 0.1, 1.0))
    return np.hypot(dx * c + dy * s, (dy * c - dx * s) / q)


def ring_auc(score: np.ndarray, reference: np.ndarray, between: np.ndarray, radius: np.ndarray) -> float:
    """:func:`arm_auc` within elliptical rings of the disc, averaged over the rings: whether
    ``score`` ranks arm pixels above the disc between the arms *at the same radius*. Any map that
    is brighter towards the centre ranks inner arms above outer gaps; within a ring only what
    tells arms from gaps counts. NaN where no ring has enough of both."""
    inside = reference | between
    if not reference.any() or not between.any():
        return np.nan
    edges = np.quantile(radius[inside], np.linspace(0, 1, RING_BINS + 1))
    aucs = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        ring = (radius >= lo) & (radius <= hi)
        arms, gaps = reference & ring, between & ring
        if arms.sum() >= MIN_RING_PX and gaps.sum() >= MIN_RING_PX:
            aucs.append(arm_auc(score, arms, gaps))
    return float(np.mean(aucs)) if aucs else np.nan


HIGHPASS_SIGMAS = (0.01, 0.08)
"""The Gaussians whose difference :func:`highpass_map` takes, as shares of the image's side: arms
are a few per cent of the frame wide, the disc's smooth light varies over tens of per cent."""


def highpass_map(image: np.ndarray) -> np.ndarray:
    """(H, W) the image's band mean less its smooth light (a difference of Gaussians,
    :data:`HIGHPASS_SIGMAS`): the same-radius ranking a plain filter gives, which a network
    should beat to say more about the arms than the image shows."""
    planes = np.asarray(image, dtype=np.float64)
    mean = planes.mean(axis=2) if planes.ndim == 3 else planes
    small, large = (
        ndimage.gaussian_filter(mean, f * max(mean.shape), mode="nearest") for f in HIGHPASS_SIGMAS
    )
    return small - large


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
    volunteers' (``REF_ARMS``). Beside the arm-over-disc ranking, the same within elliptical rings
    (``RING_AUC``, :func:`ring_auc`) and that of the image's own brightness (``BRIGHTNESS_RING_AUC``,
    the baseline a mask must beat to say more than the image) and that of the image less its
    smooth light (``HIGHPASS_RING_AUC``, :func:`highpass_map`: what a plain filter tells).
    ``cuts``: probability cut-offs scored side by side from one prediction of each image (the
    ``CUT`` column); by default the predictor's own."""
    predictor = predictor.only("spiral")  # the references are arms; a run's bar head is not scored
    cuts = [predictor.cut] if cuts is None else [check_cut(c) for c in cuts]
    rows = []
    for galaxy in real_galaxies(folder):
        image = read_picture(galaxy.path)
        probabilities = predictor.predict_image(image)
        reference = np.asarray(read_picture(galaxy.arm_mask))[..., 0] > 127 if galaxy.arm_mask else None
        if reference is not None or (measure and (probabilities > min(cuts)).any()):
            geometry, light = geometry_and_light(image)  # one geometry and light for every mask
        tolerance = REAL_TOLERANCE_NET_PX * max(image.shape[:2]) / predictor.size
        if reference is not None:  # the rankings do not depend on the cut
            between = inter_arm_disc(reference, tolerance)
            aucs = [arm_auc(plane, reference, between) for plane in probabilities]
            radius = disc_radius(image.shape[:2], geometry)
            ring_aucs = [ring_auc(plane, reference, between, radius) for plane in probabilities]
            brightness = ring_auc(light, reference, between, radius)
            filtered = ring_auc(highpass_map(image), reference, between, radius)
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
                    "RING_AUC": np.nan,
                    "BRIGHTNESS_RING_AUC": np.nan,
                    "HIGHPASS_RING_AUC": np.nan,
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
                    row.update(ARM_AUC=aucs[k], RING_AUC=ring_aucs[k], BRIGHTNESS_RING_AUC=brightness)
                    row.update(HIGHPASS_RING_AUC=filtered)
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


# ----------------------------------------------------------------------------- real GZ:3D files

ON_HEXAGON_PX = 3.0
"""A marked pixel within this distance of the MaNGA hexagon's line (image pixels) is on it."""
GZ3D_RECALL_VOTES = 3
"""The check on real GZ:3D files asks for the pixels at least this many volunteers drew arms on."""


def gz3d_scores(planes: dict[str, np.ndarray], galaxy, thresholds: Sequence[int], cut: float) -> list[dict]:
    """One real GZ:3D file's rows of :func:`gz3d_check`, from a predictor's full-resolution planes
    ({"spiral": (T, H, W), "bar": ...}) marked above ``cut``."""
    spiral, bar = galaxy.spiral_votes, galaxy.bar_votes
    ifu = ifu_design_size(galaxy.metadata)
    on_line = (
        hexagon_distance(int(ifu), spiral.shape[0]) <= ON_HEXAGON_PX
        if ifu and spiral.shape[0] == spiral.shape[1]
        else np.zeros(spiral.shape, bool)
    )
    drawn = spiral >= GZ3D_RECALL_VOTES
    rows = []
    for k, th in enumerate(thresholds):
        arms = planes["spiral"][k] > cut if "spiral" in planes else np.zeros(spiral.shape, bool)
        bars = planes["bar"][k] > cut if "bar" in planes else np.zeros(spiral.shape, bool)
        rows.append(
            {
                "NAME": str(galaxy.mangaid),
                "TH": int(th),
                "VOLUNTEER_ARM_PX": int((spiral >= th).sum()),
                "ARM_PX": int(arms.sum()),
                "ARM_PX_ON_HEXAGON": int((arms & on_line).sum()),
                "RECALL": float((arms & drawn).sum() / drawn.sum()) if drawn.any() else np.nan,
                "PRECISION": float((arms & (spiral >= 1)).sum() / arms.sum()) if arms.any() else np.nan,
                "VOLUNTEER_BAR_PX": int((bar >= th).sum()),
                "BAR_PX": int(bars.sum()),
            }
        )
    return rows


def gz3d_check(predictor: Predictor, paths: Sequence[str | os.PathLike[str]]) -> Table:
    """Real GZ:3D files against their volunteers, per file and threshold, at the predictor's own
    zooms and cut: the pixels marked, how many lie on the burned-in hexagon (within
    :data:`ON_HEXAGON_PX` of its line), the recall of the pixels :data:`GZ3D_RECALL_VOTES` or more
    volunteers drew arms on, the precision against any volunteer's arms (HDU 3 >= 1), and the bar
    pixels beside the volunteers' (HDU 4 >= th)."""
    rows = []
    for path in paths:
        galaxy = read_gz3d(path)
        planes = predictor.split(predictor.predict_image(galaxy.image))
        rows += gz3d_scores(planes, galaxy, predictor.thresholds, predictor.cut)
    return Table(rows=rows)
