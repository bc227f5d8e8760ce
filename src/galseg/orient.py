"""The canonical orientation: a galaxy and its mirror image get mirrored answers.

A network and the arm measurements are only nearly symmetric: a spiral and its mirror image,
each predicted and measured as given, can disagree about its winding at some thresholds. So
``galseg predict`` turns every image into one orientation that depends only on its pixels (of
its eight flips and quarter turns, the one whose (rows, columns) and bytes sort first), predicts
and measures it there, and turns the answers back: the masks exactly, pixel coordinates and
angles by the same map, and the winding (``CHIRALITY``, an arm's ``SLOPE``) reversed where the
map is a reflection. A mirrored input then reaches the same canonical image, so its masks are
the exact mirror and its chirality the exact opposite, with or without ``--tta``.

An orientation is (k, flip) as in :data:`galseg.dataset.DIHEDRAL`: a left-right flip if
``flip``, then k quarter turns anticlockwise as displayed (``numpy.rot90``).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from galseg.arms import Arm, ArmSummary, DiscGeometry
from galseg.dataset import DIHEDRAL

Orientation = tuple[int, bool]
IDENTITY: Orientation = (0, False)
MIRRORED = {"S": "Z", "Z": "S"}
"""The winding seen in a mirror ("" stays "")."""


def turn(array: np.ndarray, orientation: Orientation, *, axes: tuple[int, int] = (0, 1)) -> np.ndarray:
    """``array`` seen in ``orientation`` (a view): its (rows, columns) are ``axes``."""
    k, flip = orientation
    out = np.flip(array, axis=axes[1]) if flip else array
    return np.rot90(out, k, axes=axes) if k else out


def turn_back(array: np.ndarray, orientation: Orientation, *, axes: tuple[int, int] = (0, 1)) -> np.ndarray:
    """The inverse of :func:`turn`: turn back, then flip back."""
    k, flip = orientation
    out = np.rot90(array, -k, axes=axes) if k else array
    return np.flip(out, axis=axes[1]) if flip else out


def canonical(image: np.ndarray) -> Orientation:
    """The orientation in which ``image`` (H, W, ...) sorts first: by its shape, then by its bytes
    row by row. An image and any flip or turn of it reach the same canonical image."""
    best, best_view = IDENTITY, image
    for orientation in DIHEDRAL[1:]:
        view = turn(image, orientation)
        if _sorts_before(view, best_view):
            best, best_view = orientation, view
    return best


def _sorts_before(a: np.ndarray, b: np.ndarray, rows: int = 64) -> bool:
    """Whether ``a`` comes before ``b``: the smaller shape first, else the first differing pixel
    value (compared a band of rows at a time, so a large image costs no full-size copies)."""
    if a.shape != b.shape:
        return a.shape < b.shape
    for start in range(0, a.shape[0], rows):
        band_a, band_b = a[start : start + rows].ravel(), b[start : start + rows].ravel()
        differ = np.flatnonzero(band_a != band_b)
        if differ.size:
            return bool(band_a[differ[0]] < band_b[differ[0]])
    return False


def _steps(orientation: Orientation) -> list[str]:
    """The elementary maps of ``orientation`` in the order applied: 'flip', then 'rot' k times."""
    k, flip = orientation
    return ["flip"] * flip + ["rot"] * k


def point(orientation: Orientation, x: np.ndarray, y: np.ndarray, shape: tuple[int, int]):
    """Pixel coordinates (x right, y down, 0-based) on an (H, W) image, as they lie on the
    image turned to ``orientation``."""
    h, w = shape
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    for step in _steps(orientation):
        if step == "flip":
            x = (w - 1) - x
        else:  # numpy.rot90: out[i, j] = in[j, W - 1 - i]
            x, y, h, w = y, (w - 1) - x, w, h
    return x, y


def point_back(orientation: Orientation, x, y, shape: tuple[int, int]):
    """The inverse of :func:`point`: coordinates on the turned image (``shape`` the original's)
    back on the original."""
    k, flip = orientation
    inverse = orientation if flip else ((-k) % 4, False)
    turned = shape if k % 2 == 0 else shape[::-1]
    return point(inverse, x, y, turned)


def angle_back(orientation: Orientation, phi: np.ndarray | float) -> np.ndarray | float:
    """A direction on the turned image (radians, anticlockwise from the image's x axis as
    displayed) on the original: a flip maps phi to pi - phi, a quarter turn adds pi / 2."""
    for step in reversed(_steps(orientation)):
        phi = np.pi - phi if step == "flip" else phi - np.pi / 2
    return phi


def is_reflection(orientation: Orientation) -> bool:
    return bool(orientation[1])


def geometry_back(orientation: Orientation, geometry: DiscGeometry, shape: tuple[int, int]) -> DiscGeometry:
    """A disc measured on the turned image, on the original (``shape``); the position angle kept
    in [0, pi) as :func:`galseg.arms.disc_geometry` gives it."""
    x, y = point_back(orientation, geometry.x, geometry.y, shape)
    phi = float(angle_back(orientation, geometry.position_angle)) % np.pi
    return replace(geometry, x=float(x), y=float(y), position_angle=phi)


def arm_back(orientation: Orientation, arm: Arm, turned: DiscGeometry, original: DiscGeometry) -> Arm:
    """An arm fitted on the turned image's disc (``turned``) in the original's (``original``,
    from :func:`geometry_back`): theta is measured from the disc's major axis in the face-on
    plane, so it changes sign under a reflection and by pi where the major axis' direction was
    wrapped into [0, pi)."""
    major = angle_back(orientation, turned.position_angle)
    same_major = np.cos(major - original.position_angle) > 0  # the axis kept its direction
    if is_reflection(orientation):
        theta0, slope = (-arm.theta0 if same_major else np.pi - arm.theta0), -arm.slope
        chirality = MIRRORED.get(arm.chirality, arm.chirality)
    else:
        theta0, slope, chirality = (
            (arm.theta0 if same_major else arm.theta0 + np.pi),
            arm.slope,
            arm.chirality,
        )
    return replace(arm, theta0=float(theta0), slope=float(slope), chirality=chirality)


def summary_back(orientation: Orientation, summary: ArmSummary) -> ArmSummary:
    """A galaxy's arm summary in the original orientation: only the winding can change."""
    if not is_reflection(orientation):
        return summary
    return replace(summary, chirality=MIRRORED.get(summary.chirality, summary.chirality))


def bar_angle_back(orientation: Orientation, degrees: np.ndarray) -> np.ndarray:
    """Bar position angles (degrees in [0, 180), NaN where none) in the original orientation."""
    return np.degrees(angle_back(orientation, np.radians(np.asarray(degrees, dtype=float)))) % 180.0


def turn_source(source, orientation: Orientation, *, back: bool = False):
    """An input (:class:`galseg.inputs.InputImage`) turned to ``orientation`` (or, ``back``,
    turned back from it): its pixels and the volunteers' centre and stars, which are pixel
    coordinates on it. Its WCS is kept: only its pixel scale is used on the turned image."""
    if orientation == IDENTITY:
        return source
    image = np.ascontiguousarray((turn_back if back else turn)(source.image, orientation))
    original = image.shape[:2] if back else source.image.shape[:2]

    def move(x, y):
        return (point_back if back else point)(orientation, x, y, original)

    centre, stars = source.centre, source.stars
    if centre is not None:
        centre = tuple(float(v) for v in move(centre[0], centre[1]))
    if stars is not None and len(stars):
        stars = np.array(stars, dtype=float, copy=True)
        stars[:, 0], stars[:, 1] = move(stars[:, 0], stars[:, 1])
    return replace(source, image=image, centre=centre, stars=stars)


def stats_back(orientation: Orientation, stats) -> None:
    """Per-threshold catalogue columns (an astropy Table) measured on the turned image, in place:
    the winding reversed under a reflection, the bar's position angle mapped."""
    if orientation == IDENTITY:
        return
    if "CHIRALITY" in stats.colnames and is_reflection(orientation):
        stats["CHIRALITY"] = np.array([MIRRORED.get(c, c) for c in stats["CHIRALITY"]], dtype="U1")
    if "BAR_PA_DEG" in stats.colnames:
        stats["BAR_PA_DEG"] = bar_angle_back(orientation, stats["BAR_PA_DEG"]).astype("f4")


def measurements_back(
    orientation: Orientation,
    geometry: DiscGeometry | None,
    arms: dict[int, tuple[list[Arm], ArmSummary]],
    shape: tuple[int, int],
) -> tuple[DiscGeometry | None, dict[int, tuple[list[Arm], ArmSummary]]]:
    """The disc and every threshold's arms measured on the turned image, on the original
    (``shape``, its (H, W))."""
    if orientation == IDENTITY or geometry is None:
        return geometry, arms
    original = geometry_back(orientation, geometry, shape)
    arms = {
        th: (
            [arm_back(orientation, arm, geometry, original) for arm in found],
            summary_back(orientation, summary),
        )
        for th, (found, summary) in arms.items()
    }
    return original, arms
