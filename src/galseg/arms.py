"""Arm measurements astronomers publish: arm count, pitch angle, chirality, extent, length, light.

From an arm mask (or probability map) and the image:

1. the centre: the brightest point of the smoothed image near the middle (or given);
2. the disc's axis ratio and position angle from the second moments of its light (or given);
3. deprojection of the mask to face-on, so a circle in the disc is a circle here;
4. arms = connected components of the face-on mask outside a small central zone (where arms
   meet the bulge), each fitted with a logarithmic spiral r = r0 exp(theta tan(phi)): theta is
   unwrapped along increasing radius, and theta = a + b ln r is fitted by least squares, so
   tan(phi) = 1 / |b| and the sign of b gives the winding. Components and smoothing are
   scipy.ndimage's.

Chirality convention (as :mod:`galseg.synthetic`): on the image as shown (row 0 at the top), an
arm turning anticlockwise as it goes outward is Z-wise; clockwise outward is S-wise. Measure on
the image as observed: a flipped image (flip augmentation) swaps S and Z.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from galseg import GalsegError


@dataclass(frozen=True)
class DiscGeometry:
    """Centre (x right, y down, pixels), axis ratio b/a and position angle (radians, anticlockwise
    from the image's x axis as displayed) of the disc."""

    x: float
    y: float
    axis_ratio: float = 1.0
    position_angle: float = 0.0


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
    """Per galaxy: arm count, length-weighted pitch, dominant chirality and the share agreeing."""

    n_arms: int
    pitch_deg: float
    pitch_err_deg: float
    chirality: str
    chirality_agreement: float


def luminance(image: np.ndarray) -> np.ndarray:
    """Sky-subtracted brightness (H, W) of an (H, W, 3) or (H, W) image, floored at zero."""
    grey = image.astype(np.float64).mean(axis=2) if image.ndim == 3 else image.astype(np.float64)
    return np.clip(grey - np.median(grey), 0, None)


def find_centre(image: np.ndarray) -> tuple[float, float]:
    """The brightest point of the smoothed image within the middle half: the bulge, not a star
    near the edge."""
    light = ndimage.uniform_filter(
        luminance(image), size=max(3, (min(image.shape[:2]) // 40) | 1), mode="nearest"
    )
    h, w = light.shape
    y, x = np.mgrid[0:h, 0:w]
    middle = (np.abs(x - (w - 1) / 2) < w / 4) & (np.abs(y - (h - 1) / 2) < h / 4)
    row, col = np.unravel_index(np.argmax(np.where(middle, light, -np.inf)), light.shape)
    return float(col), float(row)


def disc_geometry(image: np.ndarray, *, centre: tuple[float, float] | None = None) -> DiscGeometry:
    """Axis ratio and position angle from the light's second moments about the centre, within the
    radius holding most of the light above the sky (the outer disc sets the inclination)."""
    cx, cy = centre if centre is not None else find_centre(image)
    light = luminance(image)
    h, w = light.shape
    y, x = np.mgrid[0:h, 0:w]
    dx, dy = x - cx, cy - y  # y up, so angles run anticlockwise as displayed
    r = np.hypot(dx, dy)
    noise = 1.4826 * np.median(np.abs(light - np.median(light))) + 1e-9
    weights = np.where((light > 3 * noise) & (r < 0.45 * min(h, w)), light, 0.0)
    # the square root tempers the bulge, whose round light would pull the axis ratio towards 1
    weights = np.sqrt(weights)
    if weights.sum() <= 0:
        return DiscGeometry(cx, cy)
    total = weights.sum()
    cov = (
        np.array(
            [
                [np.sum(weights * dx * dx), np.sum(weights * dx * dy)],
                [np.sum(weights * dx * dy), np.sum(weights * dy * dy)],
            ]
        )
        / total
    )
    values, vectors = np.linalg.eigh(cov)
    ratio = float(np.sqrt(max(values[0], 1e-12) / max(values[1], 1e-12)))
    major = vectors[:, 1]
    return DiscGeometry(cx, cy, ratio, float(np.arctan2(major[1], major[0]) % np.pi))


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
    """The mask seen face-on on a square grid centred on the galaxy; returns (grid, pixel scale).

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
    out = np.zeros((size, size), dtype=bool)
    out[inside] = mask[row[inside], col[inside]]
    return out, scale


def label_components(mask: np.ndarray) -> np.ndarray:
    """8-connected components of a boolean mask: 0 for background, 1..n for components (an arm
    one pixel wide runs diagonally, so diagonal neighbours must join)."""
    return ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))[0]


def fit_log_spiral(
    x: np.ndarray, y: np.ndarray, *, bins: int = 24
) -> tuple[float, float, float, float, float]:
    """Fit theta = a + b ln r to face-on pixel positions (y up), unwrapping theta along radius.

    Returns (a, b, standard error of b, r_min, r_max). Pixels are grouped in radial bins; each
    bin's circular mean angle is unwrapped against the previous bin, so an arm may wind past a
    full turn; each pixel's angle is then unwrapped to its bin's.
    """
    r = np.hypot(x, y)
    theta = np.arctan2(y, x)
    log_r = np.log(np.maximum(r, 1e-6))
    edges = np.linspace(log_r.min(), log_r.max() + 1e-9, bins + 1)
    which = np.clip(np.searchsorted(edges, log_r, side="right") - 1, 0, bins - 1)
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
) -> tuple[list[Arm], ArmSummary]:
    """Find and fit the arms of one galaxy.

    Parameters
    ----------
    mask : (H, W) bool arm mask, or probabilities (thresholded at 0.5).
    image : (H, W, 3) or (H, W) image, for the centre, the disc geometry and the light fraction.
    geometry : the disc's centre and orientation, if known (else measured from ``image``, else a
        face-on disc at the image centre).
    arcsec_per_px : pixel scale for lengths in arcsec (NaN without).
    min_area_fraction : smaller components (in face-on pixels, as a share of the grid) are noise.
    central_fraction : radius, as a share of the face-on grid, inside which arms are not split.
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
    face_on &= radius > max(central_fraction * size * scale, ring_radius(face_on, radius))
    labels = label_components(face_on)
    light = luminance(image) if image is not None else None
    arms = []
    for label in range(1, labels.max() + 1):
        member = labels == label
        if member.sum() < max(min_area_fraction * size * size, 12):
            continue
        a, b, b_err, r_min, r_max = fit_log_spiral(xd[member], yd[member])
        if r_max < 1.3 * r_min:  # a blob, not an arm
            continue
        pitch = np.degrees(np.arctan(1.0 / max(abs(b), 1e-9)))
        pitch_err = np.degrees(b_err / (1.0 + b * b))
        sin_pitch = np.sin(np.radians(pitch))
        length = (r_max - r_min) / max(sin_pitch, 1e-6)
        width = member.sum() * scale * scale / max(length, 1e-6)
        if length < MIN_ELONGATION * width or pitch > MAX_PITCH_DEG:  # a blob, not an arm
            continue
        observed = _reproject(member, geometry, scale, mask.shape) & mask
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
        return [], empty
    lengths = np.array([arm.length_px for arm in arms])
    weights = lengths / lengths.sum()
    z_share = float(weights[[arm.chirality == "Z" for arm in arms]].sum())
    chirality = "Z" if z_share > 0.5 else "S" if z_share < 0.5 else ""
    pitches = np.array([arm.pitch_deg for arm in arms])
    errors = np.array([arm.pitch_err_deg for arm in arms])
    pitch = float(weights @ pitches)
    # the scatter between arms and the arms' own errors, whichever is larger
    scatter = float(np.sqrt(weights @ (pitches - pitch) ** 2)) if len(arms) > 1 else 0.0
    own = float(np.sqrt(weights**2 @ errors**2))
    return arms, ArmSummary(
        len(arms), pitch, max(scatter / np.sqrt(len(arms)), own), chirality, max(z_share, 1 - z_share)
    )


def _reproject(
    face_on: np.ndarray, geometry: DiscGeometry, scale: float, shape: tuple[int, int]
) -> np.ndarray:
    """Observed-image pixels whose face-on position falls in ``face_on``."""
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
    out = np.zeros(shape, dtype=bool)
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
