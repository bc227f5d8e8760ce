"""Bar measurements that bar studies use: presence, length, position angle, axis ratio, light.

From a bar mask, the disc geometry that the arms use (:func:`galseg.arms.disc_geometry`) and
the image's light:

- the bar is the mask's connected region nearest the disc centre (bars are central; a stray
  blob elsewhere is not the bar);
- its position angle and axis ratio are the second moments of that region's pixels (uniform
  weights: an ellipse's moments give its axis ratio exactly);
- its length runs end to end through the centre: the region's farthest pixel on each side of
  the centre along the bar's axis, as Walmsley & Spindler (2023) and Hoyle et al. (2011) measure
  bar length from the centre outwards on both sides;
- the deprojected length takes those two ends into the disc plane (the disc's axis ratio and
  position angle), so a bar seen along the minor axis of an inclined disc is not shortened;
- the light share is the bar region's sky-subtracted light over the image's (as for arms).

Angles run anticlockwise from the image's x axis as displayed (row 0 at the top), in [0, 180).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from galseg.arms import DiscGeometry, label_components

MIN_BAR_PX = 4
"""A bar region smaller than this (pixels of the measured image) is noise, not a bar."""


@dataclass(frozen=True)
class Bar:
    """One galaxy's bar at one threshold; NaN where there is no bar."""

    present: bool
    area_px: int
    length_px: float  # end to end through the centre, as observed
    length_arcsec: float
    position_angle_deg: float
    axis_ratio: float
    deprojected_length_px: float
    light_fraction: float

    def as_row(self) -> dict:
        return asdict(self)


NO_BAR = Bar(False, 0, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan)


def _to_disc(dx: np.ndarray, dy: np.ndarray, geometry: DiscGeometry) -> tuple[np.ndarray, np.ndarray]:
    """Offsets from the centre (x right, y up) into the face-on disc plane."""
    c, s = np.cos(geometry.position_angle), np.sin(geometry.position_angle)
    q = float(np.clip(geometry.axis_ratio, 0.1, 1.0))
    return dx * c + dy * s, (-dx * s + dy * c) / q


def measure_bar(
    mask: np.ndarray,
    geometry: DiscGeometry,
    *,
    light: np.ndarray | None = None,
    arcsec_per_px: float | None = None,
) -> Bar:
    """Measure the bar in ``mask`` (H, W bool) of a galaxy whose disc is ``geometry``.

    ``light``: :func:`galseg.arms.luminance` of the image, for the light share (NaN without it).
    ``arcsec_per_px``: the image's pixel scale (from its WCS), for the length in arcseconds.
    """
    if mask.sum() < MIN_BAR_PX:
        return NO_BAR
    labels = label_components(mask)
    n = int(labels.max())
    y, x = np.nonzero(labels)
    region_of = labels[y, x]
    distance = np.hypot(x - geometry.x, y - geometry.y)
    nearest = np.full(n + 1, np.inf)
    np.minimum.at(nearest, region_of, distance)
    sizes = np.bincount(region_of, minlength=n + 1)
    # the region nearest the centre; among regions touching it, the largest
    chosen = int(np.lexsort((-sizes[1:], np.round(nearest[1:], 0)))[0]) + 1
    keep = region_of == chosen
    if keep.sum() < MIN_BAR_PX:
        return NO_BAR
    dx, dy = x[keep] - geometry.x, geometry.y - y[keep]  # y up: angles anticlockwise as shown
    cov = np.cov(np.stack([dx - dx.mean(), dy - dy.mean()]), bias=True)
    values, vectors = np.linalg.eigh(cov)
    major = vectors[:, 1]
    along = dx * major[0] + dy * major[1]
    # a pixel reaches half a pixel beyond its centre: the extent of the region, not of the centres
    ends = np.array([along.max() + 0.5, along.min() - 0.5])
    length = float(ends[0] - ends[1])
    ex, ey = ends * major[0], ends * major[1]
    fx, fy = _to_disc(ex, ey, geometry)
    region = np.zeros(mask.shape, dtype=bool)
    region[y[keep], x[keep]] = True
    total = float(light.sum()) if light is not None else 0.0
    return Bar(
        present=True,
        area_px=int(keep.sum()),
        length_px=length,
        length_arcsec=length * arcsec_per_px if arcsec_per_px else np.nan,
        position_angle_deg=float(np.degrees(np.arctan2(major[1], major[0])) % 180.0),
        axis_ratio=float(np.sqrt(max(values[0], 1e-12) / max(values[1], 1e-12))),
        deprojected_length_px=float(np.hypot(fx[0] - fx[1], fy[0] - fy[1])),
        light_fraction=float(light[region].sum() / total) if total > 0 else np.nan,
    )


def angle_difference_deg(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    """abs(a - b) for axes (defined modulo 180 degrees), in [0, 90]."""
    d = np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float)) % 180.0
    return np.minimum(d, 180.0 - d)
