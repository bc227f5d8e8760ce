"""Which pixels belong to the galaxy: its footprint, and the one region its arms and bar can be in.

The footprint (:func:`footprint`) is every pixel as bright as a galaxy: the denominator of the
arm fraction "of the galaxy". The galaxy's region (:func:`galaxy_region`) is the footprint's piece
that holds the image's centre, where a cutout puts its target, grown by a margin: an arm or a bar
is part of its galaxy, so a mask on light not joined to it (a foreground star beside it, a
neighbour) is not the galaxy's. ``galseg predict`` and :meth:`galseg.inference.Predictor.predict_image`
drop every marked piece that does not reach the region (:func:`outside_galaxy`): whole pieces,
not pixels, so an arm that runs on past the footprint into the faint outskirts keeps its end.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

SMOOTH_PX = 5
"""The footprint's box smoothing: it brings the noise down this many times before thresholding."""
MARGIN = 0.02
"""The galaxy's region is grown by this share of the image's side (at least 2 pixels): the
smoothed footprint stops short of an arm's faint edge."""


def footprint(image: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels belonging to the galaxy (and anything as bright): the band mean,
    smoothed over :data:`SMOOTH_PX` pixels, above the sky by 3 robust sigmas of the smoothed noise."""
    grey = image.astype(np.float32).mean(axis=2)
    smooth = ndimage.uniform_filter(grey, size=SMOOTH_PX, mode="nearest")
    sky = np.median(grey)
    noise = 1.4826 * np.median(np.abs(grey - sky)) or 1.0
    return smooth > sky + 3 * noise / SMOOTH_PX


def galaxy_region(image: np.ndarray, area: np.ndarray | None = None) -> np.ndarray | None:
    """(H, W) bool: the piece of the footprint (``area``, else :func:`footprint` of ``image``) that
    holds the image's centre (the middle 2 x 2 pixels, so every mirror of the image picks the
    same), grown by :data:`MARGIN`; None when no piece does (nothing to go by: keep everything)."""
    area = footprint(image) if area is None else area
    labels, _ = ndimage.label(area)
    h, w = area.shape
    middle = labels[(h - 1) // 2 : h // 2 + 1, (w - 1) // 2 : w // 2 + 1]
    held = np.unique(middle[middle > 0])
    if not held.size:
        return None
    grow = max(2, round(MARGIN * min(h, w)))
    galaxy = np.isin(labels, held)
    # grown within the galaxy's box and the margin around it only: a 4096-pixel image's margin is
    # 82 passes of the dilation, which over the whole image would take seconds
    rows, cols = ndimage.find_objects(galaxy.astype(np.int8))[0]
    box = (
        slice(max(rows.start - grow, 0), rows.stop + grow),
        slice(max(cols.start - grow, 0), cols.stop + grow),
    )
    region = np.zeros_like(galaxy)
    region[box] = ndimage.binary_dilation(galaxy[box], iterations=grow)
    return region


def outside_galaxy(planes: np.ndarray, region: np.ndarray | None, cut: float) -> np.ndarray | None:
    """(H, W) bool: the pieces of the marked pixels (above ``cut`` on any of the (P, H, W)
    ``planes``, 8-connected) that do not reach ``region``; None when there are none to drop."""
    if region is None:
        return None
    marked = (planes > cut).any(axis=0)
    labels, n = ndimage.label(marked, structure=np.ones((3, 3), dtype=bool))
    if not n:
        return None
    reached = np.zeros(n + 1, dtype=bool)
    reached[np.unique(labels[region & marked])] = True
    reached[0] = True  # the unmarked pixels stay as they are
    drop = ~reached[labels]
    return drop if drop.any() else None


def drop_pieces(planes: np.ndarray, drop: np.ndarray | None) -> np.ndarray:
    """(P, H, W) ``planes`` set to 0 on the ``drop`` pixels, every plane alike (unchanged for None)."""
    return planes if drop is None else np.where(drop, planes.dtype.type(0), planes)
