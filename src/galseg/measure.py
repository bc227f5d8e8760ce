"""One galaxy's catalogue columns from its full-resolution planes: arm pixels and fractions,
the arms' pitch, count and chirality, and the bar's length and angle, all on one disc geometry."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from astropy.table import Table
from astropy.wcs.utils import proj_plane_pixel_scales

from galseg.arms import (
    Arm,
    ArmSummary,
    DiscGeometry,
    agreement_map,
    count_arms,
    geometry_and_light,
    measure_arms,
)
from galseg.bars import NO_BAR, measure_bar
from galseg.inference import CUT
from galseg.inputs import InputImage
from galseg.outputs import BAR_COLUMNS, BAR_DTYPES, STAT_COLUMNS, STAT_DTYPES


def arm_statistics(
    probabilities: np.ndarray, thresholds: Sequence[int], galaxy: np.ndarray, *, cut: float = CUT
) -> Table:
    """Per threshold: has arms, arm pixels (probability above ``cut``), arm fraction of the image
    and of the galaxy footprint, and the mean probability over the arm pixels (NaN without any)."""
    rows = []
    n_galaxy = max(int(galaxy.sum()), 1)
    for k, th in enumerate(thresholds):
        mask = probabilities[k] > cut
        n = int(mask.sum())
        rows.append(
            (
                th,
                n > 0,
                n,
                n / mask.size,
                int((mask & galaxy).sum()) / n_galaxy,
                float(probabilities[k][mask].mean()) if n else np.nan,
            )
        )
    return Table(rows=rows, names=STAT_COLUMNS[:6], dtype=STAT_DTYPES[:6])


def disc_context(source: InputImage) -> tuple[DiscGeometry, np.ndarray, float | None]:
    """What every measurement of one galaxy shares: the disc geometry measured from the image
    (with the volunteers' centre and stars when the file has them), its light, its pixel scale."""
    geometry, light = geometry_and_light(source.image, centre=source.centre, stars=source.stars)
    arcsec = None
    if source.wcs is not None:
        arcsec = float(np.mean(proj_plane_pixel_scales(source.wcs.celestial)) * 3600)
        arcsec = arcsec if np.isfinite(arcsec) and arcsec > 0 else None
    return geometry, light, arcsec


def add_bar_columns(
    stats: Table,
    probabilities: np.ndarray,
    context: tuple[DiscGeometry, np.ndarray, float | None] | None,
    *,
    cut: float = CUT,
) -> None:
    """Per-threshold bar columns from the bar planes: presence and pixels always (HAS_BAR is
    BAR_PIXELS > 0, as for arms); length, angle, axis ratio, deprojected length and light share
    of the central bar region when ``context`` (the disc) was measured, NaN otherwise."""
    masks = [probabilities[k] > cut for k in range(len(stats))]
    bars = [
        measure_bar(m, context[0], light=context[1], arcsec_per_px=context[2]) if context else NO_BAR
        for m in masks
    ]
    stats["HAS_BAR"] = np.array([m.any() for m in masks], dtype="?")
    stats["BAR_PIXELS"] = np.array([m.sum() for m in masks], dtype="i8")
    fields = (
        "length_px",
        "length_arcsec",
        "position_angle_deg",
        "axis_ratio",
        "deprojected_length_px",
        "light_fraction",
    )
    for column, dtype, name in zip(BAR_COLUMNS[2:], BAR_DTYPES[2:], fields, strict=True):
        stats[column] = np.array([getattr(b, name) for b in bars], dtype=dtype)


def add_arm_summaries(stats: Table, arms: dict[int, tuple[list[Arm], ArmSummary]], *, measured: bool) -> None:
    """Per-threshold arm columns: segments found, pitch, chirality, and the number of arms, counted
    on every level's mask at once (N_ARMS and ARM_COUNT -1 when arms were not measured)."""
    summaries = [arms[int(th)][1] if measured else None for th in stats["TH"]]
    stats["N_ARMS"] = np.array([s.n_arms if s else -1 for s in summaries], dtype="i2")
    stats["PITCH_DEG"] = np.array([s.pitch_deg if s else np.nan for s in summaries], dtype="f4")
    stats["PITCH_ERR_DEG"] = np.array([s.pitch_err_deg if s else np.nan for s in summaries], dtype="f4")
    stats["CHIRALITY"] = np.array([s.chirality if s else "" for s in summaries], dtype="U1")
    stats["CHIRALITY_AGREEMENT"] = np.array(
        [s.chirality_agreement if s else np.nan for s in summaries], dtype="f4"
    )
    stats["ARM_COUNT"] = np.array([s.count if s else -1 for s in summaries], dtype="i2")


def galaxy_statistics(
    source: InputImage,
    planes: dict[str, np.ndarray],
    thresholds: Sequence[int],
    galaxy: np.ndarray,
    *,
    measure: bool = True,
    cut: float = CUT,
) -> tuple[Table, DiscGeometry | None, dict[int, tuple[list[Arm], ArmSummary]]]:
    """One galaxy's per-threshold catalogue columns from its full-resolution planes ({"spiral":
    (T, H, W), "bar": ...}), pixels marked above ``cut``: arm statistics and measurements, bar
    columns; one disc geometry for all. Returns (statistics, the geometry or None, {threshold:
    (arms, summary)})."""
    context = disc_context(source) if measure else None
    geometry, arms = (context[0] if context else None), {}
    stats = Table({"TH": np.array(thresholds, dtype="i2")})
    if "spiral" in planes:
        arm_stats = arm_statistics(planes["spiral"], thresholds, galaxy, cut=cut)
        for column in arm_stats.colnames[1:]:
            stats[column] = arm_stats[column]
        if context is not None:
            _, light, arcsec = context
            marked = planes["spiral"] > cut
            count = count_arms(agreement_map(marked), geometry)  # every level at once, one count
            arms = {
                th: measure_arms(
                    marked[k],
                    source.image,
                    geometry=geometry,
                    arcsec_per_px=arcsec,
                    light=light,
                    count=count,
                )
                for k, th in enumerate(thresholds)
            }
        add_arm_summaries(stats, arms, measured=context is not None)
    if "bar" in planes:
        add_bar_columns(stats, planes["bar"], context, cut=cut)
    return stats, geometry, arms
