"""Arm measurements astronomers publish: arm count, pitch angle, chirality, extent, length, light.

From an arm mask (or probability map) and the image:

1. the sky and its noise from sigma-clipped statistics; stars masked (given, or found as compact
   sources); the centre: given (GZ:3D's centre clicks) or the brightest smoothed point near the
   middle with stars masked;
2. the disc's axis ratio and position angle from the second moments of the galaxy's own light
   (the connected region above the sky that holds the centre), or given;
3. deprojection of the mask to face-on, so a circle in the disc is a circle here;
4. arms = connected components of the face-on mask outside a small central zone (where arms
   meet the bulge), each fitted with a logarithmic spiral r = r0 exp(theta tan(phi)) along its
   medial line (:func:`medial_line`: the longest path of the whole mask's skeleton within the
   component, scikit-image's thinning): theta is unwrapped along increasing radius, and
   theta = a + b ln r is fitted by least squares, so tan(phi) = 1 / abs(b) and the sign of b gives
   the winding. Components and smoothing are scipy.ndimage's;
5. the arm count: the peaks of the face-on map's azimuthal profile unwound along log spirals
   (:func:`arm_count`), which an arm drawn in pieces or two arms joined near the bulge do not
   change, as they change the count of segments; counted on every confidence level at once
   (:func:`count_arms` of the :func:`agreement_map`), so an arm few volunteers drew still counts.

Chirality convention (as :mod:`galseg.synthetic`): on the image as shown (row 0 at the top), an
arm turning anticlockwise as it goes outward is Z-wise; clockwise outward is S-wise. Measure on
the image as observed: a flipped image (flip augmentation) swaps S and Z.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from functools import cache

import numpy as np
from astropy.stats import sigma_clipped_stats
from scipy import ndimage, optimize, signal
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components, dijkstra
from skimage.morphology import skeletonize

from galseg import GalsegError


@dataclass(frozen=True)
class DiscGeometry:
    """Centre (x right, y down, pixels), axis ratio b/a and position angle (radians, anticlockwise
    from the image's x axis as displayed) of the disc."""

    x: float
    y: float
    axis_ratio: float = 1.0
    position_angle: float = 0.0
    semi_major_px: float = np.nan  # of the outer isophote region (NaN when none was found)


@dataclass(frozen=True)
class Arm:
    """One fitted arm. Lengths along the face-on spiral; area and light on the image as observed."""

    pitch_deg: float
    pitch_err_deg: float
    chirality: str  # "S" or "Z"
    extent_deg: float
    r_min_px: float
    r_max_px: float
    length_px: float
    length_arcsec: float
    area_px: int
    light_fraction: float
    theta0: float  # fitted theta at r = 1 px (radians), to redraw the spiral
    slope: float  # d theta / d ln r

    def as_row(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ArmSummary:
    """Per galaxy: arm segments found, their pitch (weighted by length squared), the dominant
    chirality and the share of arm length agreeing, and the number of arms (see :func:`arm_count`;
    a segment is an arm or a piece of one)."""

    n_arms: int
    pitch_deg: float
    pitch_err_deg: float
    chirality: str
    chirality_agreement: float
    count: int = 0


STRETCH_RANGE = np.arcsinh(200.0)
"""8-bit cutouts are asinh-stretched; inverting a stretch softened at 1/200 of full scale (as
SDSS and galseg's synthetic colour images are made) brings their pixels back near linear flux."""


def linear_flux(image: np.ndarray) -> np.ndarray:
    """(H, W) flux, near linear, of an (H, W, 3) or (H, W) image: 8-bit pixels have the asinh
    stretch undone; float data (FITS) is taken as it is. Bands are summed."""
    data = np.asarray(image)
    if data.dtype == np.uint8:  # a table of the 766 possible band sums: no sinh per pixel
        bands = data.shape[2] if data.ndim == 3 else 1
        total = data.sum(axis=2, dtype=np.uint16) if data.ndim == 3 else data
        return _unstretch_table(bands)[total]
    return data.astype(np.float64).mean(axis=2) if data.ndim == 3 else data.astype(np.float64)


@cache
def _unstretch_table(bands: int) -> np.ndarray:
    """sinh of the mean 8-bit value, for every sum of ``bands`` 8-bit values."""
    return np.sinh(np.arange(255 * bands + 1) / bands / 255.0 * STRETCH_RANGE)


def sky_level(flux: np.ndarray) -> tuple[float, float]:
    """(sky, noise) of an image from 3-sigma-clipped statistics of all its pixels (astropy),
    so the galaxy and stars do not bias them and the noise is never zero."""
    sample = flux[::3, ::3] if flux.size > 40_000 else flux  # a ninth of a big image is plenty
    _, median, std = sigma_clipped_stats(sample, sigma=3.0, maxiters=10)
    return float(median), float(std) if std > 0 else float(np.std(flux) or 1.0)


def luminance(image: np.ndarray, *, flux: np.ndarray | None = None, sky: float | None = None) -> np.ndarray:
    """Sky-subtracted near-linear flux (H, W), floored at zero: the light the arms' share is of.
    ``flux``: :func:`linear_flux` of ``image``, and ``sky`` its level, if known."""
    flux = linear_flux(image) if flux is None else flux
    return np.clip(flux - (sky_level(flux)[0] if sky is None else sky), 0, None)


def compact_sources(
    flux: np.ndarray, *, sky: float, noise: float, psf_px: float
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean mask of point-like sources (stars): where the white top-hat (the light a grey
    opening a few PSFs wide removes) stands 5 noise sigmas above, and three times as high as the
    extended light under it; grown by two PSF widths. A galaxy's own centre, even a compact
    bulge, rises out of its disc and stays unmasked. Returns (mask, the extended light alone)."""
    width = max(3, int(4 * psf_px) | 1)
    extended = ndimage.grey_opening(flux, size=(width, width), mode="nearest")
    excess = flux - extended
    peaks = (excess > 5 * noise) & (excess > 3 * np.clip(extended - sky, 0, None))
    peaks = ndimage.binary_opening(peaks, structure=np.ones((2, 2), bool))
    grow = 2 * max(1, int(2 * psf_px)) + 1
    return ndimage.maximum_filter(peaks, size=grow), extended  # a square grown at once: fast


def _star_mask(shape: tuple[int, int], stars: np.ndarray | None) -> np.ndarray:
    """Discs around known stars, (N, 3) rows of x, y, radius in pixels (GZ:3D HDU 7)."""
    mask = np.zeros(shape, dtype=bool)
    if stars is None or not len(stars):
        return mask
    y, x = np.ogrid[: shape[0], : shape[1]]
    for sx, sy, radius in np.asarray(stars, dtype=float):
        mask |= (x - sx) ** 2 + (y - sy) ** 2 <= radius**2
    return mask


def smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing; wide kernels (sigma >= 4 px) run on a 2 x 2-binned copy, brought back
    by repeating each pixel: eight times less work, within 3% of the peak of the full Gaussian
    (half a pixel's shift along the gradient), far below the isophote's 5% of the centre."""
    if sigma < 4:
        return ndimage.gaussian_filter(values, sigma)
    h, w = values.shape
    binned = values[: h // 2 * 2, : w // 2 * 2].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    out = np.repeat(np.repeat(ndimage.gaussian_filter(binned, sigma / 2), 2, axis=0), 2, axis=1)
    return np.pad(out, ((0, h - out.shape[0]), (0, w - out.shape[1])), mode="edge")


CENTRE_PRIOR = 0.05
"""Width of the preference for the cutout's middle when finding the centre, as a share of the side
(survey cutouts are centred on their target; the synthetic centres lie within 3.2% of the side of
the middle). On the spirals of synthetic seeds 5 / 21 (115 / 114), centres within 5 px: 76% / 73%
with a 10% preference that could move the peak and compact cores masked; 78% / 76% choosing among
the light's own peaks; 84% / 79% with 5%; 84% / 85% searching the light with compact sources
opened away (below). The misses are bright foreground stars, their halos wider than the opening."""


def find_centre(
    image: np.ndarray,
    *,
    light: np.ndarray | None = None,
    sky: float | None = None,
    flux: np.ndarray | None = None,
) -> tuple[float, float]:
    """The brightest peak of ``light`` (else the image's flux) smoothed over 3% of its size, within
    the middle half, the peaks weighted towards the middle (:data:`CENTRE_PRIOR`). Pass the
    extended light (:func:`compact_sources`: stars' cores and compact knots opened away): the
    bulge's broad base stays, so its peak is the galaxy's, where a masked compact core would have
    left an arm's knot the brightest. ``flux``: :func:`linear_flux` of ``image``, if known."""
    flux = linear_flux(image) if flux is None else flux
    sky = sky_level(flux)[0] if sky is None else sky
    searched = flux if light is None else light
    smoothed = ndimage.gaussian_filter(searched, sigma=max(1.0, 0.03 * min(flux.shape)))
    h, w = smoothed.shape
    y, x = np.mgrid[0:h, 0:w]
    # cutouts are centred on their target: light far from the middle counts less (a Gaussian of
    # 5% of the side), so a bright star beside the galaxy loses to the galaxy itself
    d2 = (x - (w - 1) / 2) ** 2 + (y - (h - 1) / 2) ** 2
    middle = (np.abs(x - (w - 1) / 2) < w / 4) & (np.abs(y - (h - 1) / 2) < h / 4)
    # only the light's own peaks compete, so the weighting chooses a peak but never moves it
    peaks = middle & (smoothed == ndimage.maximum_filter(smoothed, size=3))
    if not peaks.any():
        peaks = middle
    score = np.where(peaks, (smoothed - sky) * np.exp(-d2 / (2 * (CENTRE_PRIOR * min(h, w)) ** 2)), -np.inf)
    row, col = np.unravel_index(np.argmax(score), smoothed.shape)
    # refine to the light-weighted centroid of the peak's neighbourhood (sub-pixel, robust to noise)
    r = max(2, int(0.02 * min(h, w)))
    window = np.s_[max(row - r, 0) : row + r + 1, max(col - r, 0) : col + r + 1]
    weights = np.clip(smoothed[window] - sky, 0, None)
    if weights.sum() > 0:
        return float((x[window] * weights).sum() / weights.sum()), float(
            (y[window] * weights).sum() / weights.sum()
        )
    return float(col), float(row)


def disc_geometry(
    image: np.ndarray,
    *,
    centre: tuple[float, float] | None = None,
    stars: np.ndarray | None = None,
    psf_px: float | None = None,
    flux: np.ndarray | None = None,
    background: tuple[float, float] | None = None,
    fit: bool = True,
) -> DiscGeometry:
    """Centre, axis ratio and position angle of the galaxy alone.

    Sky and noise come from sigma-clipped statistics of the whole (unclipped) image; stars are
    masked (``stars``: GZ:3D's star clusters as x, y, radius rows, plus any compact source
    found); the galaxy is the connected region of the smoothed light above its outer isophote
    that holds the centre. The axis ratio and angle are the second moments of that region, then
    (``fit``) refined by a disc-and-bulge model fitted to the light (:func:`fit_disc_shape`).
    ``centre``: e.g. the volunteers' centre clicks (GZ:3D HDU 6), else found by
    :func:`find_centre`. ``flux``: :func:`linear_flux` of ``image``, and ``background``: its
    :func:`sky_level`, if known.
    """
    flux = linear_flux(image) if flux is None else flux
    h, w = flux.shape
    sky, noise = sky_level(flux) if background is None else background
    psf_px = psf_px or max(1.5, 0.01 * min(h, w))
    flux = flux.astype(np.float32, copy=False)  # the filters below run twice as fast in float32
    compact, extended = compact_sources(flux, sky=sky, noise=noise, psf_px=psf_px)
    masked = _star_mask((h, w), stars) | compact
    cx, cy = centre if centre is not None else find_centre(image, light=extended, sky=sky, flux=flux)
    near_centre = (np.arange(h)[:, None] - cy) ** 2 + (np.arange(w)[None, :] - cx) ** 2 < (3 * psf_px) ** 2
    masked &= ~near_centre  # the bulge is not a star
    clean = np.where(masked, extended, flux)
    # the outer isophote, over the arms: light smoothed over two PSFs, above 3 smoothed noise
    # sigmas and 5% of the centre's light; the region holding the centre, holes (stars) filled
    smoothed = smooth(clean, 2 * psf_px)
    row, col = int(np.clip(round(cy), 0, h - 1)), int(np.clip(round(cx), 0, w - 1))
    level = sky + max(3 * noise / (2 * psf_px), 0.05 * (smoothed[row, col] - sky))
    labels, _ = ndimage.label(smoothed > level)
    if labels[row, col] == 0:
        return DiscGeometry(cx, cy)
    region = labels == labels[row, col]
    box = ndimage.find_objects(region.astype(np.int8))[0]  # fill holes in the galaxy's box only
    galaxy = ndimage.binary_fill_holes(region[box])
    if galaxy.sum() < 10:
        return DiscGeometry(cx, cy)
    y, x = np.nonzero(galaxy)
    y, x = y + box[0].start, x + box[1].start
    dx, dy = x - cx, cy - y  # y up, so angles run anticlockwise as displayed
    # uniform weights: for an elliptical region the moments give its axis ratio exactly, and the
    # bright round bulge cannot pull it towards 1
    cov = np.cov(np.stack([dx, dy]), bias=True)
    values, vectors = np.linalg.eigh(cov)
    ratio = float(np.sqrt(max(values[0], 1e-12) / max(values[1], 1e-12)))
    major = vectors[:, 1]
    # a uniform ellipse of semi-major axis a has variance a^2 / 4 along it
    semi_major = float(2 * np.sqrt(max(values[1], 0.0)))
    angle = float(np.arctan2(major[1], major[0]) % np.pi)
    if fit:
        fitted = fit_disc_shape(flux - sky, masked, (cx, cy), ratio, angle, semi_major, noise=noise)
        ratio, angle = fitted if fitted is not None else (ratio, angle)
    return DiscGeometry(cx, cy, ratio, angle, semi_major)


FIT_SIDE = 64
"""The light is binned to about this many pixels a side before the disc model is fitted."""


def fit_disc_shape(
    light: np.ndarray,
    masked: np.ndarray,
    centre: tuple[float, float],
    axis_ratio: float,
    position_angle: float,
    semi_major: float,
    *,
    noise: float,
) -> tuple[float, float] | None:
    """Axis ratio and position angle of the disc, fitted: an exponential disc plus an exponential
    bulge (same centre and angle, the bulge its own flattening) to the sky-subtracted ``light``
    binned to about :data:`FIT_SIDE` pixels, ``masked`` (stars) left out, by least squares with a
    Cauchy loss, so arms, a bar and leftover stars weigh little. The isophote's moments start it.

    Why: arms, bars and the bulge shape every isophote, so their moments miss the disc's axis
    ratio by a median 0.09 and its angle by 6.6 deg (115 synthetic spirals of seed 5, centre from
    the clicks); this fit, by 0.029 and 2.3 deg, which halved the pitch error after deprojection
    (``benchmarks/bench_arms.py``). None if it fails.
    """
    h, w = light.shape
    f = max(1, min(h, w) // FIT_SIDE)
    hb, wb = h // f, w // f
    binned = light[: hb * f, : wb * f].reshape(hb, f, wb, f).mean(axis=(1, 3))
    usable = ~masked[: hb * f, : wb * f].reshape(hb, f, wb, f).any(axis=(1, 3))
    rows, cols = np.nonzero(usable)
    x = (cols + 0.5) * f - 0.5 - centre[0]
    y = centre[1] - ((rows + 0.5) * f - 0.5)  # y up, as the angle is measured
    data = binned[usable].astype(np.float64)
    sigma = max(noise / f, 1e-6)
    centre_light = max(
        float(binned[int(np.clip(centre[1] // f, 0, hb - 1)), int(np.clip(centre[0] // f, 0, wb - 1))]), sigma
    )
    scale = max(semi_major / 3, 2.0 * f) if np.isfinite(semi_major) else 10.0 * f

    def model(p: np.ndarray) -> np.ndarray:
        e1, e2, log_disc, log_scale, log_bulge, log_bulge_scale, bulge_q = p
        q, phi = _axis_ratio_and_angle(e1, e2)
        c, s = np.cos(phi), np.sin(phi)
        major, minor = x * c + y * s, (-x * s + y * c) / q
        disc = np.exp(log_disc - np.hypot(major, minor) / np.exp(log_scale))
        bulge_r = np.hypot(major, minor * q / np.clip(bulge_q, 0.3, 1.0))
        return disc + np.exp(log_bulge - bulge_r / np.exp(log_bulge_scale))

    e0 = (1 - axis_ratio) / (1 + axis_ratio)
    start = np.array(
        [
            e0 * np.cos(2 * position_angle),
            e0 * np.sin(2 * position_angle),
            np.log(0.3 * centre_light),
            np.log(scale),
            np.log(centre_light),
            np.log(scale / 5),
            0.9,
        ]
    )
    try:
        result = optimize.least_squares(
            lambda p: (model(p) - data) / sigma, start, loss="cauchy", f_scale=3.0, max_nfev=200
        )
    except (ValueError, np.linalg.LinAlgError):
        return None
    if not np.all(np.isfinite(result.x)):
        return None
    q, phi = _axis_ratio_and_angle(*result.x[:2])
    return q, phi % np.pi


def _axis_ratio_and_angle(e1: float, e2: float) -> tuple[float, float]:
    """(b/a, major-axis angle) of the ellipticity (e1, e2) = e (cos 2phi, sin 2phi) with
    e = (1 - q) / (1 + q): the fit's parameters, free of the angle's wrap at 180 degrees
    (e capped at 0.95, so q >= 0.026)."""
    e = min(float(np.hypot(e1, e2)), 0.95)
    return (1 - e) / (1 + e), float(0.5 * np.arctan2(e2, e1))


def geometry_and_light(
    image: np.ndarray, *, centre: tuple[float, float] | None = None, stars: np.ndarray | None = None
) -> tuple[DiscGeometry, np.ndarray]:
    """:func:`disc_geometry` and :func:`luminance` of one image, sharing its linear flux and sky:
    what every arm and bar measurement of a galaxy needs, computed once."""
    flux = linear_flux(image)
    background = sky_level(flux)
    geometry = disc_geometry(image, centre=centre, stars=stars, flux=flux, background=background)
    return geometry, luminance(image, flux=flux, sky=background[0])


MIN_ELONGATION = 2.5
"""An arm is at least this many times longer (along its fitted spiral) than it is wide."""
MAX_PITCH_DEG = 60.0
"""Steeper 'arms' are radial streaks or blobs; measured spiral pitch angles stay well below."""
FACE_ON_SIZE = 192
"""Side of the face-on grid: arms are tens of pixels wide in GZ:3D images, so a coarser grid
measures the same pitch in a fraction of the time."""


def deproject(
    mask: np.ndarray, geometry: DiscGeometry, *, size: int | None = None
) -> tuple[np.ndarray, float]:
    """The mask (or a float map) seen face-on on a square grid centred on the galaxy; returns
    (grid, pixel scale).

    Each face-on pixel looks up the observed pixel it projects to (nearest neighbour). The grid
    spans the observed image's half-diagonal, stretched by 1 / axis ratio along the minor axis.
    """
    h, w = mask.shape
    q = float(np.clip(geometry.axis_ratio, 0.1, 1.0))
    half = 0.5 * np.hypot(h, w)
    size = size or int(min(2 * half, FACE_ON_SIZE))
    scale = 2 * half / size  # face-on pixels per observed pixel along the major axis
    u = (np.arange(size) - (size - 1) / 2) * scale
    xd, yd = np.meshgrid(u, -u)  # disc plane, y up
    c, s = np.cos(geometry.position_angle), np.sin(geometry.position_angle)
    v = yd * q
    x = geometry.x + xd * c - v * s
    y = geometry.y - (xd * s + v * c)
    col, row = np.rint(x).astype(np.int64), np.rint(y).astype(np.int64)
    inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
    out = np.zeros((size, size), dtype=mask.dtype if mask.dtype.kind == "f" else bool)
    out[inside] = mask[row[inside], col[inside]]
    return out, scale


def label_components(mask: np.ndarray) -> np.ndarray:
    """8-connected components of a boolean mask: 0 for background, 1..n for components (an arm
    one pixel wide runs diagonally, so diagonal neighbours must join)."""
    return ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))[0]


def fit_log_spiral(
    x: np.ndarray, y: np.ndarray, *, bins: int = 24, ordered: bool = False
) -> tuple[float, float, float, float, float]:
    """Fit theta = a + b ln r to face-on pixel positions (y up), unwrapping theta along radius.

    Returns (a, b, standard error of b, r_min, r_max). Pixels are grouped in radial bins; each
    bin's circular mean angle is unwrapped against the previous bin, so an arm may wind past a
    full turn; each pixel's angle is then unwrapped to its bin's. ``ordered``: the points follow
    one another along the arm (a :func:`medial_line`), and theta is unwrapped from point to point,
    which holds however tightly the arm winds.
    """
    r = np.hypot(x, y)
    theta = np.arctan2(y, x)
    log_r = np.log(np.maximum(r, 1e-6))
    edges = np.linspace(log_r.min(), log_r.max() + 1e-9, bins + 1)
    which = np.clip(np.searchsorted(edges, log_r, side="right") - 1, 0, bins - 1)
    if ordered:
        theta = np.unwrap(theta)
    else:
        used = np.unique(which)
        mean_angle = np.array([np.angle(np.mean(np.exp(1j * theta[which == b]))) for b in used])
        mean_angle = np.unwrap(mean_angle)
        reference = np.interp(log_r, (edges[used] + edges[used + 1]) / 2, mean_angle)
        theta = theta + 2 * np.pi * np.round((reference - theta) / (2 * np.pi))
    design = np.stack([np.ones_like(log_r), log_r], axis=1)
    coef, *_ = np.linalg.lstsq(design, theta, rcond=None)
    residual = theta - design @ coef
    dof = max(len(theta) - 2, 1)
    sigma2 = float(residual @ residual) / dof
    spread = float(np.sum((log_r - log_r.mean()) ** 2))
    # pixels within an arm's width are not independent: count one per arm width along the arm
    effective = max(len(np.unique(which)), 3)
    slope_err = np.sqrt(sigma2 / max(spread, 1e-12) * len(theta) / effective)
    return (
        float(coef[0]),
        float(coef[1]),
        float(slope_err),
        float(np.exp(log_r.min())),
        float(np.exp(log_r.max())),
    )


END_TRIM = 1.0
"""The medial line loses this many half-widths at each end (see :func:`medial_line`)."""


def medial_line(skeleton: np.ndarray, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of an arm's medial line, in order: the longest path through ``skeleton`` (one
    arm's share of the face-on mask's skeleton, 8-connected), each end shortened by the arm's
    half-width there (``depth``: the distance to the mask's edge), where the skeleton forks into
    the corners of a square-cut outline end. Empty if the skeleton is too small.

    Why the medial line and not every pixel: the mean angle of an outline's pixels at each radius
    follows the ridge only where the whole width is crossed; a perpendicular end, or a width that
    changes along the arm, pulls it off. Volunteers' outlines are wide (up to a third of the gap
    between arms) and often short, so on synthetic volunteer masks at th = 3 (generator's
    geometry) the pixel fit read pitch a median 0.8 deg too open; the medial line, 0.2 deg.
    The skeleton is of the whole mask, before the central zone is cut out: the cut would bend it.
    """
    rows, cols = np.nonzero(skeleton)
    n = rows.size
    if n < 5:
        return rows[:0], cols[:0]
    index = np.full(skeleton.shape, -1)
    index[rows, cols] = np.arange(n)
    source, target, step = [], [], []
    for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
        r2, c2 = rows + dr, cols + dc
        inside = (r2 < skeleton.shape[0]) & (c2 >= 0) & (c2 < skeleton.shape[1])
        neighbour = np.full(n, -1)
        neighbour[inside] = index[r2[inside], c2[inside]]
        linked = neighbour >= 0
        source.append(np.nonzero(linked)[0])
        target.append(neighbour[linked])
        step.append(np.full(linked.sum(), np.hypot(dr, dc)))
    graph = coo_matrix(
        (np.concatenate(step), (np.concatenate(source), np.concatenate(target))), shape=(n, n)
    ).tocsr()
    # the longest shortest path (a tree's diameter): the farthest node from any node is one end
    _, piece = connected_components(graph, directed=False)
    start = int(np.nonzero(piece == np.argmax(np.bincount(piece)))[0][0])
    reach = dijkstra(graph, directed=False, indices=start)
    first = int(np.argmax(np.where(np.isfinite(reach), reach, -1)))
    reach, previous = dijkstra(graph, directed=False, indices=first, return_predecessors=True)
    node = int(np.argmax(np.where(np.isfinite(reach), reach, -1)))
    path = [node]
    while node != first:
        node = int(previous[node])
        path.append(node)
    order = np.array(path[::-1])
    along = reach[order]
    ends = depth[rows[order[[0, -1]]], cols[order[[0, -1]]]]
    keep = (along >= END_TRIM * ends[0]) & (along <= along[-1] - END_TRIM * ends[1])
    order = order[keep] if keep.sum() >= 5 else order
    return rows[order], cols[order]


def ring_radius(face_on: np.ndarray, radius: np.ndarray, *, coverage: float = 0.5, bins: int = 40) -> float:
    """Outer radius of the central zone where the mask wraps most of the way round (a ring about
    the bulge, where arms meet), searched within the inner 40% of the mask's extent; 0 if none.
    Arms are cut free of it, or they would join into one component."""
    if not face_on.any():
        return 0.0
    extent = radius[face_on].max()
    edges = np.linspace(0, 0.4 * extent, bins + 1)
    which = np.digitize(radius, edges) - 1
    inside = (which >= 0) & (which < bins)
    area = np.bincount(which[inside], minlength=bins)
    covered = np.bincount(which[inside], weights=face_on[inside].astype(float), minlength=bins)
    ring = np.nonzero(covered >= coverage * np.maximum(area, 1))[0]
    return float(edges[ring.max() + 1]) if ring.size else 0.0


def measure_arms(
    mask: np.ndarray,
    image: np.ndarray | None = None,
    *,
    geometry: DiscGeometry | None = None,
    arcsec_per_px: float | None = None,
    min_area_fraction: float = 0.002,
    central_fraction: float = 0.04,
    light: np.ndarray | None = None,
    count: int | None = None,
) -> tuple[list[Arm], ArmSummary]:
    """Find and fit the arms of one galaxy.

    Parameters
    ----------
    mask
        (H, W) bool arm mask, or probabilities (thresholded at 0.5).
    image
        (H, W, 3) or (H, W) image, for the centre, the disc geometry and the light fraction.
    geometry
        the disc's centre and orientation, if known (else measured from ``image``, else a
        face-on disc at the image centre).
    arcsec_per_px
        pixel scale for lengths in arcsec (NaN without).
    min_area_fraction
        smaller components (in face-on pixels, as a share of the grid) are noise.
    central_fraction
        radius, as a share of the face-on grid, inside which arms are not split.
    light
        :func:`luminance` of ``image``, when the caller measures several masks of one image.
    count
        the galaxy's arm count, when taken already: :func:`count_arms` of its
        :func:`agreement_map`, one count for every threshold (a fifth of GZ:3D's th = 3 masks lack
        an arm that fewer volunteers drew). Default: counted on this mask alone.
    """
    mask = np.asarray(mask)
    mask = mask > 0.5 if mask.dtype != bool else mask
    if mask.ndim != 2:
        raise GalsegError(f"arm mask must be 2-D, got shape {mask.shape}")
    h, w = mask.shape
    if geometry is None:
        geometry = disc_geometry(image) if image is not None else DiscGeometry((w - 1) / 2, (h - 1) / 2)
    empty = ArmSummary(0, np.nan, np.nan, "", np.nan)
    if not mask.any():
        return [], empty
    face_on, scale = deproject(mask, geometry)
    size = face_on.shape[0]
    u = (np.arange(size) - (size - 1) / 2) * scale
    xd, yd = np.meshgrid(u, -u)
    radius = np.hypot(xd, yd)
    if count is None:  # the whole mask: arms meeting the bulge keep their phase
        count = arm_count(face_on, xd, yd)
    skeleton, depth = skeletonize(face_on), ndimage.distance_transform_edt(face_on)
    face_on &= radius > max(central_fraction * size * scale, ring_radius(face_on, radius))
    labels = label_components(face_on)
    if light is None and image is not None:
        light = luminance(image)
    arms = []
    seen_labels = None  # every component's observed pixels, found once for the first arm kept
    for label in range(1, labels.max() + 1):
        member = labels == label
        if member.sum() < max(min_area_fraction * size * size, 12):
            continue
        r_member = radius[member]
        r_min, r_max = float(r_member.min()), float(r_member.max())
        if r_max < 1.3 * r_min:  # a blob, not an arm
            continue
        fitted = _arm_fit(xd, yd, member, medial_line(skeleton & member, depth), r_max - r_min, scale)
        if fitted is None:  # a blob, not an arm
            continue
        a, b, pitch, pitch_err, length = fitted
        if seen_labels is None:
            seen_labels = _reproject(labels, geometry, scale, mask.shape)
        observed = (seen_labels == label) & mask
        fraction = (
            float(light[observed].sum() / light.sum()) if light is not None and light.sum() > 0 else np.nan
        )
        arms.append(
            Arm(
                pitch_deg=float(pitch),
                pitch_err_deg=float(pitch_err),
                chirality="Z" if b > 0 else "S",
                extent_deg=float(np.degrees(abs(b) * np.log(r_max / r_min))),
                r_min_px=r_min,
                r_max_px=r_max,
                length_px=float(length),
                length_arcsec=float(length * arcsec_per_px) if arcsec_per_px else np.nan,
                area_px=int(observed.sum()),
                light_fraction=fraction,
                theta0=a,
                slope=b,
            )
        )
    if not arms:
        return [], replace(empty, count=count)  # no segment long enough, but the arms may show
    lengths = np.array([arm.length_px for arm in arms])
    weights = lengths / lengths.sum()
    z_share = float(weights[[arm.chirality == "Z" for arm in arms]].sum())
    chirality = "Z" if z_share > 0.5 else "S" if z_share < 0.5 else ""
    pitches = np.array([arm.pitch_deg for arm in arms])
    errors = np.array([arm.pitch_err_deg for arm in arms])
    # the pitch weights each arm by its length squared: a long arm's pitch is the better measured,
    # and short pieces are where volunteers' outlines wander (median error 1.50 / 2.11 deg against
    # 1.66 / 2.31 weighted by length, synthetic seeds 5 / 21, bench_arms.py with clicks)
    by_length2 = lengths**2 / (lengths**2).sum()
    pitch = float(by_length2 @ pitches)
    # the scatter between arms and the arms' own errors, whichever is larger
    scatter = float(np.sqrt(by_length2 @ (pitches - pitch) ** 2)) if len(arms) > 1 else 0.0
    own = float(np.sqrt(by_length2**2 @ errors**2))
    return arms, ArmSummary(
        len(arms), pitch, max(scatter / np.sqrt(len(arms)), own), chirality, max(z_share, 1 - z_share), count
    )


def _arm_fit(
    xd: np.ndarray,
    yd: np.ndarray,
    member: np.ndarray,
    line: tuple[np.ndarray, np.ndarray],
    span: float,
    scale: float,
) -> tuple[float, float, float, float, float] | None:
    """(a, b, pitch, pitch error, length) of one face-on component, fitted along its medial line,
    or to all its pixels where the line's fit reads a blob (a tightly wound arm whose skeleton
    loops); None if both read a blob: shorter than :data:`MIN_ELONGATION` widths or steeper than
    :data:`MAX_PITCH_DEG`. ``span``: r_max - r_min of the component."""
    rows, cols = line
    tries = [(xd[rows, cols], yd[rows, cols], True)] if rows.size >= 5 else []
    for x, y, ordered in [*tries, (xd[member], yd[member], False)]:
        a, b, b_err, *_ = fit_log_spiral(x, y, ordered=ordered)
        pitch = float(np.degrees(np.arctan(1.0 / max(abs(b), 1e-9))))
        length = span / max(np.sin(np.radians(pitch)), 1e-6)
        width = member.sum() * scale * scale / max(length, 1e-6)
        if length >= MIN_ELONGATION * width and pitch <= MAX_PITCH_DEG:
            return a, b, pitch, float(np.degrees(b_err / (1.0 + b * b))), float(length)
    return None


MAX_ARMS = 6
"""The most arms counted (GZ:3D spirals rarely show more than six)."""

PEAK_PROMINENCE = 0.1
"""An arm in the unwound profile (:func:`arm_count`) rises above its neighbours by at least this
share of the profile's range (chosen on synthetic seeds 7, 11 and 13, checked on 5 and 21)."""

UNWIND_PITCHES_DEG = np.arange(4.0, 61.0)
"""Pitch angles the profile is unwound at, both windings (GZ:3D spirals: about 5-45 degrees)."""


def agreement_map(masks: np.ndarray) -> np.ndarray:
    """(H, W) share of the confidence levels marking each pixel, from (T, H, W) masks at every
    threshold (volunteers: votes >= th; a network: its planes above the cut). An arm that only a
    few volunteers drew weighs less than one all drew, but it is there to be counted."""
    return np.asarray(masks, dtype=bool).mean(axis=0, dtype=np.float32)


def count_arms(agreement: np.ndarray, geometry: DiscGeometry) -> int:
    """The galaxy's arm count: :func:`arm_count` of an (H, W) map (an :func:`agreement_map`, or
    one mask) seen face-on."""
    face_on, scale = deproject(agreement, geometry)
    u = (np.arange(face_on.shape[0]) - (face_on.shape[0] - 1) / 2) * scale
    xd, yd = np.meshgrid(u, -u)
    return arm_count(face_on, xd, yd)


def arm_count(
    face_on: np.ndarray, x: np.ndarray, y: np.ndarray, *, radial_bins: int = 48, angle_bins: int = 96
) -> int:
    """The number of arms in a face-on arm map (0 if it is too small): the peaks of its unwound
    azimuthal profile.

    The map (a mask, or a share of confidence levels in 0..1) is averaged on a grid of u = ln r and
    theta between its 5th and 95th percentile radii; each ring is shifted by -u / tan(phi), which
    turns every log spiral of pitch phi into a straight line, and averaged over u. The pitch (and
    winding) kept is the one whose profile varies most; each arm then stands as one peak, however
    the volunteers broke it into pieces or joined it to its neighbour near the bulge, and an arm
    fainter, shorter or drawn by fewer volunteers than the others still counts, where the
    dominant 2DFFT mode (Puerari & Dottori 1992; Davis et al. 2012) reads a lopsided pair as one
    arm. On the volunteers' agreement maps of synthetic spirals (geometry with their clicks): right
    for 89% / 84% (seeds 5 / 21), the dominant mode 84% / 81%. ``x``, ``y``: face-on positions
    of the grid's pixels, y up.
    """
    values = np.asarray(face_on, dtype=float)
    radius = np.hypot(x, y)
    marked = (values > 0) & (radius > 0)
    if marked.sum() < 20:
        return 0
    r_in, r_out = np.percentile(radius[marked], [5, 95])
    r_in = max(float(r_in), 1.0)
    if r_out < 1.4 * r_in:
        return 0
    inside = (radius >= r_in) & (radius <= r_out)
    u0, du = np.log(r_in), np.log(r_out / r_in) / radial_bins
    dt = 2 * np.pi / angle_bins
    u_bin = np.minimum(((np.log(radius[inside]) - u0) / du).astype(int), radial_bins - 1)
    t_bin = np.minimum(((np.arctan2(y[inside], x[inside]) + np.pi) / dt).astype(int), angle_bins - 1)
    cell, cells = u_bin * angle_bins + t_bin, radial_bins * angle_bins
    pixels = np.bincount(cell, minlength=cells).reshape(radial_bins, angle_bins)
    covered = np.bincount(cell, weights=values[inside], minlength=cells).reshape(radial_bins, angle_bins)
    seen = (pixels > 0).astype(float)  # cells the grid reaches
    share = covered / np.maximum(pixels, 1)
    slopes = 1.0 / np.tan(np.radians(UNWIND_PITCHES_DEG))
    slopes = np.concatenate([slopes, -slopes])  # d theta / d u of both windings
    shift = np.rint(np.outer(slopes, np.arange(radial_bins) * du / dt)).astype(int)  # (S, U)
    columns = (np.arange(angle_bins)[None, None, :] + shift[:, :, None]) % angle_bins  # (S, U, T)
    rows = np.arange(radial_bins)[None, :, None]
    profiles = share[rows, columns].sum(axis=1) / np.maximum(seen[rows, columns].sum(axis=1), 1)
    best = profiles[int(np.argmax(profiles.var(axis=1)))]
    profile = ndimage.gaussian_filter1d(best, 2.0, mode="wrap")  # over 2 of 96 bins: 7.5 degrees
    span = float(profile.max() - profile.min())
    if span <= 1e-6:  # no pattern at any pitch: one arm-like region, not several
        return 1
    peaks, _ = signal.find_peaks(np.tile(profile, 3), prominence=PEAK_PROMINENCE * span)
    middle = (peaks >= angle_bins) & (peaks < 2 * angle_bins)  # circular: one copy's peaks
    return int(np.clip(middle.sum(), 1, MAX_ARMS))


def _reproject(
    face_on: np.ndarray, geometry: DiscGeometry, scale: float, shape: tuple[int, int]
) -> np.ndarray:
    """``face_on`` (a mask, or component labels) looked up at each observed-image pixel's face-on
    position: the observed pixels of each face-on component, all in one pass."""
    h, w = shape
    y, x = np.mgrid[0:h, 0:w]
    dx, dy = x - geometry.x, geometry.y - y
    c, s = np.cos(geometry.position_angle), np.sin(geometry.position_angle)
    q = float(np.clip(geometry.axis_ratio, 0.1, 1.0))
    xd = dx * c + dy * s
    yd = (-dx * s + dy * c) / q
    size = face_on.shape[0]
    col = np.rint(xd / scale + (size - 1) / 2).astype(np.int64)
    row = np.rint(-yd / scale + (size - 1) / 2).astype(np.int64)
    inside = (col >= 0) & (col < size) & (row >= 0) & (row < size)
    out = np.zeros(shape, dtype=face_on.dtype)
    out[inside] = face_on[row[inside], col[inside]]
    return out


def spiral_curve(arm: Arm, geometry: DiscGeometry, *, points: int = 100) -> np.ndarray:
    """(points, 2) image (x, y) along the fitted spiral between the arm's radii, for overlays."""
    radii = np.geomspace(arm.r_min_px, arm.r_max_px, points)
    theta = arm.theta0 + arm.slope * np.log(radii)
    xd, yd = radii * np.cos(theta), radii * np.sin(theta)
    c, s = np.cos(geometry.position_angle), np.sin(geometry.position_angle)
    v = yd * float(np.clip(geometry.axis_ratio, 0.1, 1.0))
    return np.stack([geometry.x + xd * c - v * s, geometry.y - (xd * s + v * c)], axis=1)
