"""Synthetic spiral galaxies and imperfect volunteers, written as GZ:3D files.

Every test, demo and benchmark runs on these, so they carry what makes the real task hard:
discs and Sérsic bulges of every size, inclination and brightness; logarithmic arms whose
number, pitch, winding, width, length, brightness and clumpiness vary; bars; a PSF; sky noise;
foreground stars; three quarters of galaxies with no arms at all (GZ:3D: 24% have arm pixels);
and about 15 volunteers per galaxy who each outline the arms they notice with their own width,
offset, length and attention, sometimes miss faint arms, sometimes draw one twice, and now and
then mark an arm that is not there.

Orientation convention (also used by the arm measurements): on the picture as shown (row 0 at
the top), an arm that turns anticlockwise as it goes outward from the centre makes a Z-wise
galaxy, clockwise outward makes it S-wise.

Galaxy ``index`` of seed ``seed`` depends on nothing else, so sets of different sizes share
their first galaxies, generation parallelises trivially, and the same seed gives the same bytes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import galsim
import numpy as np
from astropy.table import Table

from galseg import WORLD_NAMES, GalsegError, __version__
from galseg.gz3d import (
    CLUSTER_COLUMNS,
    PIXEL_SCALE_ARCSEC,
    GZ3DGalaxy,
    add_polygon,
    burn_hexagon,
    encode_paths,
    make_wcs,
    metadata_table,
    rasterise_outlines,
    write_gz3d,
)
from galseg.io import die_with_parent

GZ3D_SIZE = 525
NATIVE_FACTOR = 4
"""SDSS pixels (0.396") per GZ:3D pixel (0.099"): galaxies are rendered and given their noise on
the survey's own grid, then resampled (GalSim, Lanczos-3), so the noise is correlated over about
four GZ:3D pixels as in the real cutouts."""
KIND_PROBABILITIES = {
    "spiral": 0.19,
    "flocculent": 0.08,
    "elliptical": 0.27,
    "smooth_disc": 0.23,
    "edge_on": 0.17,
    "irregular": 0.06,
}
ARMED_KINDS = ("spiral", "flocculent")
ARM_COUNT_PROBABILITIES = {1: 0.06, 2: 0.5, 3: 0.18, 4: 0.14, 5: 0.07, 6: 0.05}
SKY_SIGMA = 1.0
STRETCH_SOFTENING = 3.0
STRETCH_MAX = 600.0
COLOURS = {  # relative r, g, b flux of each component: redder bulges and bars, bluish arms
    "bulge": np.array([1.0, 0.74, 0.5], dtype=np.float32),
    "disc": np.array([0.9, 0.82, 0.72], dtype=np.float32),
    "bar": np.array([0.98, 0.8, 0.58], dtype=np.float32),
    "arm": np.array([0.62, 0.8, 1.1], dtype=np.float32),
    "star": np.array([1.0, 0.95, 0.9], dtype=np.float32),
}


@dataclass(frozen=True)
class Truth:
    """What the generator put in one galaxy, stored in extra ``SYNTH_*`` metadata columns."""

    kind: str
    n_arms: int
    pitch_deg: float
    chirality: str  # "S", "Z", or "" without arms
    inclination_deg: float
    position_angle_deg: float
    barred: bool
    centre_x: float
    centre_y: float
    scale_length_px: float
    axis_ratio: float
    arm_theta0_deg: float  # disc-plane angle where arm 0 starts, anticlockwise from major axis
    arm_start_px: float  # disc-plane radius where the arms start
    bar_length_px: float = 0.0  # the bar end to end as seen on the image (0: no bar)
    bar_pa_deg: float = 0.0  # its axis on the image, anticlockwise from x as displayed, [0, 180)
    bar_deprojected_length_px: float = 0.0  # end to end in the disc plane

    def ridge_xy(self, arm: int, radii: np.ndarray) -> np.ndarray:
        """Picture (x, y) of arm ``arm``'s ridge at disc-plane ``radii`` (pixels), shape (N, 2)."""
        if not self.n_arms:
            raise GalsegError("this synthetic galaxy has no arms")
        sign = 1 if self.chirality == "Z" else -1
        theta = (
            np.radians(self.arm_theta0_deg)
            + 2 * np.pi * arm / self.n_arms
            + sign * np.log(radii / self.arm_start_px) / np.tan(np.radians(self.pitch_deg))
        )
        geometry = _Geometry(
            self.centre_x, self.centre_y, np.radians(self.position_angle_deg), self.axis_ratio
        )
        return np.stack(geometry.to_sky(radii * np.cos(theta), radii * np.sin(theta)), axis=1)


TRUTH_COLUMNS: dict[str, tuple[str, str]] = {
    "kind": ("SYNTH_KIND", "S12"),
    "n_arms": ("SYNTH_N_ARMS", "i2"),
    "pitch_deg": ("SYNTH_PITCH_DEG", "f4"),
    "chirality": ("SYNTH_CHIRALITY", "S1"),
    "inclination_deg": ("SYNTH_INCLINATION_DEG", "f4"),
    "position_angle_deg": ("SYNTH_PA_DEG", "f4"),
    "barred": ("SYNTH_BARRED", "?"),
    "centre_x": ("SYNTH_CENTRE_X", "f4"),
    "centre_y": ("SYNTH_CENTRE_Y", "f4"),
    "scale_length_px": ("SYNTH_SCALE_PX", "f4"),
    "axis_ratio": ("SYNTH_AXIS_RATIO", "f4"),
    "arm_theta0_deg": ("SYNTH_ARM_THETA0_DEG", "f4"),
    "arm_start_px": ("SYNTH_ARM_START_PX", "f4"),
    "bar_length_px": ("SYNTH_BAR_LENGTH_PX", "f4"),
    "bar_pa_deg": ("SYNTH_BAR_PA_DEG", "f4"),
    "bar_deprojected_length_px": ("SYNTH_BAR_DEPROJ_PX", "f4"),
}
"""Each ``Truth`` field's extra metadata column and dtype, for writing and reading alike."""


def _bar_truth(geometry: _Geometry, half_length: float, angle: float) -> dict[str, float]:
    """The bar's ends (disc plane, ``angle`` from the major axis) projected onto the image: its
    observed length and axis angle, and its length in the disc."""
    if half_length <= 0:
        return {}
    ends = np.array([half_length, -half_length])
    x, y = geometry.to_sky(ends * np.cos(angle), ends * np.sin(angle))
    return {
        "bar_length_px": float(np.hypot(x[0] - x[1], y[0] - y[1])),
        "bar_pa_deg": float(np.degrees(np.arctan2(y[1] - y[0], x[0] - x[1])) % 180.0),  # y down
        "bar_deprojected_length_px": float(2 * half_length),
    }


@dataclass(frozen=True)
class _Geometry:
    """Disc orientation: sky pixel (x right, y down) <-> disc plane (x along the major axis)."""

    cx: float
    cy: float
    pa: float  # radians, anticlockwise from the picture's x axis
    q: float  # projected axis ratio

    def to_disc(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dx, dy = x - self.cx, self.cy - y
        c, s = np.cos(self.pa), np.sin(self.pa)
        return dx * c + dy * s, (-dx * s + dy * c) / self.q

    def to_sky(self, xd: np.ndarray, yd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c, s = np.cos(self.pa), np.sin(self.pa)
        v = yd * self.q
        return self.cx + xd * c - v * s, self.cy - (xd * s + v * c)


@dataclass(frozen=True)
class _Arms:
    """Arms as logarithmic spirals, each with its own start angle, radii and brightness: evenly
    spaced and long for grand-design galaxies, many short random segments for flocculent ones."""

    pitch: float  # radians
    sign: int  # +1 Z-wise (anticlockwise outward), -1 S-wise
    theta0: np.ndarray  # per arm: disc-plane angle of the ridge at r_in
    r_in: np.ndarray
    r_out: np.ndarray
    width: float  # Gaussian sigma across the arm, disc-plane pixels
    amplitude: np.ndarray  # per arm, relative to the local disc
    clump_amp: float
    clump_freq: float
    clump_phase: np.ndarray
    dust: float  # depth of the dust lane on each arm's inner side (0: none)

    @property
    def n(self) -> int:
        return len(self.theta0)

    def ridge_theta(self, r: np.ndarray, arm: int) -> np.ndarray:
        return self.theta0[arm] + self.sign * np.log(r / self.r_in[arm]) / np.tan(self.pitch)


def _sersic_b(n: float) -> float:
    return 2.0 * n - 1.0 / 3.0 + 4.0 / (405.0 * n)


def _sersic(radius: np.ndarray, r_eff: float, n: float, i_eff: float) -> np.ndarray:
    return i_eff * np.exp(-_sersic_b(n) * ((radius / r_eff) ** (1.0 / n) - 1.0))


def _stretch(flux: np.ndarray) -> np.ndarray:
    """asinh stretch (as SDSS colour cutouts use) to 8-bit RGB; asinh as log/sqrt, 3x faster."""
    scale = np.float32(255.0 / np.arcsinh(STRETCH_MAX / STRETCH_SOFTENING))
    x = np.maximum(flux * np.float32(1.0 / STRETCH_SOFTENING), 0)
    value = np.log(x + np.sqrt(x * x + 1)) * scale + np.float32(0.5)
    return np.minimum(value, 255).astype(np.uint8)


def _choice(rng: np.random.Generator, probabilities: dict) -> object:
    keys = list(probabilities)
    return keys[rng.choice(len(keys), p=np.array(list(probabilities.values())))]


def mangaid(seed: int, index: int) -> str:
    """Synthetic identity, 11 characters at most as in the data model; 'S' marks it synthetic."""
    if not 0 <= index < 1_000_000:
        raise GalsegError(f"synthetic galaxy index {index} is out of range 0..999999")
    return f"S{seed % 1000:03d}-{index:06d}"


def file_name(seed: int, index: int) -> str:
    """The production code's ``<MANGAID>_<IFUDESIGNSIZE>_<SUBJECTID>.fits.gz`` naming."""
    rng = np.random.default_rng([seed, index, 1])
    ifu = int(rng.choice([19, 37, 61, 91, 127]))
    subject = int(rng.integers(10_000_000, 40_000_000))
    return f"{mangaid(seed, index)}_{ifu}_{subject}.fits.gz"


# ----------------------------------------------------------------------------- the galaxy


@dataclass(frozen=True)
class World:
    """Choices of the generator measured both ways and not settled for every use (docs/tried.md,
    "Thick synthetic bulges"). ``thick_bulges``: a bulge's sky axis ratio follows the disc's
    inclination (an intrinsic 0.5-1 seen at it: rounder than an inclined disc, not round, as
    real bulges are) instead of 0.7-1 whatever the inclination. ``bar_peak``: the bar's peak
    light in units of the disc's central light. The default is the world the demo's recipe was
    measured on; :data:`THICK` the one the ready model is trained on (better on real images, but
    the demo's 10 epochs learn its rarest planes less reliably). The random draws are the same in
    both, so galaxy ``index`` of a seed differs only in its bulge's shape and bar's light."""

    thick_bulges: bool = False
    bar_peak: tuple[float, float] = (0.3, 0.9)


THICK = World(thick_bulges=True, bar_peak=(0.6, 1.8))
WORLDS = dict(zip(WORLD_NAMES, (World(), THICK), strict=True))
"""``galseg synth --world``: ``classic`` (the default, the demo's) and ``thick``."""


def synthesize(
    index: int, *, seed: int = 0, size: int = GZ3D_SIZE, world: World = World()
) -> tuple[GZ3DGalaxy, Truth]:
    """Make synthetic galaxy ``index`` of seed ``seed`` as a full GZ:3D record and its truth.

    The sky is made as SDSS made it: light and noise on the survey's 0.396" grid (seeing 1.0-2.0"
    FWHM), then resampled to the 0.099" GZ:3D grid and asinh-stretched to 8-bit gri colours.
    Ranges not known from the survey are drawn widely (docs/synthetic.md).

    Parameters
    ----------
    size
        image side in pixels; 525 as in GZ:3D, smaller for fast tests (everything scales).
    """
    if size < 32:
        raise GalsegError(f"synthetic image size {size} px is too small (at least 32)")
    rng = np.random.default_rng([seed, index])
    kind = str(_choice(rng, KIND_PROBABILITIES))
    factor = NATIVE_FACTOR if size >= 256 else 2  # small test images keep a few native pixels
    n_native = -(-size // factor)
    centres = np.arange(n_native, dtype=np.float32) * factor + (factor - 1) / 2  # in GZ:3D pixels
    y, x = np.meshgrid(centres, centres, indexing="ij")
    scale_length = rng.uniform(0.045, 0.11) * size
    centre = (size - 1) / 2.0 + rng.normal(0.0, 0.012 * size, 2)
    if kind == "edge_on":
        q = rng.uniform(0.1, 0.24)
    elif kind == "elliptical":
        q = rng.uniform(0.55, 1.0)
    else:
        q = float(np.sqrt(rng.uniform(0.3, 1.0) ** 2 * (1 - 0.15**2) + 0.15**2))
    geometry = _Geometry(float(centre[0]), float(centre[1]), rng.uniform(0, np.pi), q)
    xd, yd = geometry.to_disc(x, y)
    r = np.hypot(xd, yd)
    # The PSF is applied analytically to each component (Gaussian widths add in quadrature,
    # cusps are softened over sigma): exact for the Gaussian parts, and no 2-D convolution.
    psf = rng.uniform(1.0, 2.0) / 2.355 / PIXEL_SCALE_ARCSEC * size / GZ3D_SIZE
    r_soft = np.sqrt(r * r + np.float32(psf * psf))
    disc_i0 = rng.uniform(15.0, 70.0) * np.exp(rng.uniform(np.log(0.3), 0.0))  # faint discs too
    fluxes: dict[str, np.ndarray] = {}
    arms = None
    bar_half_length = 0.0
    bar_angle = rng.uniform(0, np.pi)

    if kind == "elliptical":
        r_eff = rng.uniform(0.04, 0.1) * size
        fluxes["bulge"] = _sersic(
            np.sqrt(xd * xd + yd * yd + psf * psf), r_eff, rng.uniform(3.0, 5.0), rng.uniform(4.0, 16.0)
        )
    else:
        disc = disc_i0 * np.exp(-r_soft / scale_length)
        if kind == "edge_on":
            dust = 1.0 - rng.uniform(0.4, 0.8) * np.exp(
                -0.5 * (yd * q) ** 2 / ((0.12 * scale_length) ** 2 + psf**2)
            )
            disc = disc * dust
        if kind != "edge_on" and rng.random() < 0.15:  # a ring of young stars, no arm
            ring_r = rng.uniform(1.0, 2.6) * scale_length
            ring_w = np.hypot(rng.uniform(0.08, 0.2) * ring_r, psf)
            disc = disc + rng.uniform(0.4, 1.5) * disc_i0 * np.exp(-ring_r / scale_length) * np.exp(
                -0.5 * ((r - ring_r) / ring_w) ** 2
            )
        fluxes["disc"] = disc
        if world.thick_bulges:
            cos2_i = np.clip((q**2 - 0.15**2) / (1 - 0.15**2), 0, 1)
            bulge_q = float(np.sqrt(cos2_i + rng.uniform(0.5, 1.0) ** 2 * (1 - cos2_i)))
        else:
            bulge_q = rng.uniform(0.7, 1.0)
        dominant = rng.random() < 0.25  # bulge-dominated discs, with or without arms
        fluxes["bulge"] = _sersic(
            np.sqrt(xd * xd + (yd * q / bulge_q) ** 2 + psf * psf),
            rng.uniform(0.15, 0.45) * scale_length * (1.8 if dominant else 1.0),
            rng.uniform(1.0, 4.0),
            rng.uniform(4.0, 40.0) * (3.0 if dominant else 1.0),
        )
        barred = kind in ("spiral", "smooth_disc") and rng.random() < 0.33
        if barred:
            bar_half_length = rng.uniform(0.7, 1.4) * scale_length
            c, s = np.cos(bar_angle), np.sin(bar_angle)
            xb, yb = xd * c + yd * s, -xd * s + yd * c
            fluxes["bar"] = (
                rng.uniform(*world.bar_peak)
                * disc_i0
                * np.exp(
                    -0.5
                    * (
                        xb**2 / ((0.55 * bar_half_length) ** 2 + psf**2)
                        + yb**2 / ((0.16 * bar_half_length) ** 2 + psf**2)
                    )
                )
            )
        if kind in ARMED_KINDS:
            arms = _draw_arms(rng, scale_length, bar_half_length, bar_angle, flocculent=kind == "flocculent")
            fluxes["arm"], lane = _arm_flux(rng, arms, xd, yd, r, disc_i0, scale_length, psf)
            fluxes["disc"] = fluxes["disc"] * lane
            fluxes["bulge"] = fluxes["bulge"] * lane
        if kind == "irregular":  # clumpy, lopsided star formation and no spiral pattern
            fluxes["arm"] = _knots(rng, xd, yd, scale_length, psf, disc_i0, int(rng.integers(4, 12)))
    barred = bar_half_length > 0

    flux = sum(COLOURS[name][:, None, None] * f[None] for name, f in fluxes.items())
    _add_neighbours(rng, flux, x, y, psf, size, scale_length)
    stars = _add_stars(rng, flux, x, y, psf, size)
    # sky and photon noise per native pixel, then resampled with the light: correlated noise
    noise_sigma = np.sqrt(np.float32(SKY_SIGMA**2) + np.maximum(flux, 0) * np.float32(1 / 40))
    native = flux + rng.standard_normal(flux.shape, dtype=np.float32) * noise_sigma
    observed = _resample(native, size, factor)
    # what the volunteers saw: the bundle's hexagon burned in, as on every real GZ:3D image
    ifu = int(file_name(seed, index).split("_")[1])
    image = burn_hexagon(np.ascontiguousarray(_stretch(observed).transpose(1, 2, 0)), ifu)

    truth = Truth(
        kind=kind,
        n_arms=arms.n if arms else 0,
        pitch_deg=float(np.degrees(arms.pitch)) if arms else 0.0,
        chirality=("Z" if arms.sign > 0 else "S") if arms else "",
        inclination_deg=float(np.degrees(np.arccos(np.clip((q**2 - 0.15**2) / (1 - 0.15**2), 0, 1) ** 0.5))),
        position_angle_deg=float(np.degrees(geometry.pa)),
        barred=barred,
        centre_x=geometry.cx,
        centre_y=geometry.cy,
        scale_length_px=float(scale_length),
        axis_ratio=float(q),
        arm_theta0_deg=float(np.degrees(arms.theta0[0])) if arms else 0.0,
        arm_start_px=float(arms.r_in[0]) if arms else 0.0,
        **_bar_truth(geometry, bar_half_length, bar_angle),
    )
    volunteers = _Volunteers(
        rng, geometry, size, arms, disc_i0, scale_length, kind, bar_half_length, bar_angle
    )
    return _as_gz3d(rng, seed, index, image, volunteers, stars, truth), truth


def _resample(native: np.ndarray, size: int, factor: int) -> np.ndarray:
    """(3, n, n) light on the survey's grid to (3, size, size) on the GZ:3D grid (GalSim,
    Lanczos-3 interpolation of the surface brightness, pixel centres aligned)."""
    out = np.empty((native.shape[0], size, size), dtype=np.float32)
    for band, plane in enumerate(native):
        interpolated = galsim.InterpolatedImage(
            galsim.Image(np.ascontiguousarray(plane, dtype=np.float64), scale=float(factor)),
            x_interpolant=galsim.Lanczos(3),
            normalization="sb",
            calculate_stepk=False,
            calculate_maxk=False,
        )
        offset = galsim.PositionD(
            (plane.shape[1] * factor - size) / 2, (plane.shape[0] * factor - size) / 2
        )  # both grids start at the same corner
        drawn = interpolated.drawImage(nx=size, ny=size, scale=1.0, method="no_pixel", offset=offset)
        out[band] = drawn.array  # unit pixel scale: surface brightness per pixel, as before
    return out


def _draw_arms(
    rng: np.random.Generator,
    scale_length: float,
    bar_half_length: float,
    bar_angle: float,
    *,
    flocculent: bool,
) -> _Arms:
    if flocculent:  # many short, patchy segments at random angles and radii
        n = int(rng.integers(6, 15))
        r_in = rng.uniform(0.5, 2.2, n) * scale_length
        theta0 = rng.uniform(0, 2 * np.pi, n)
        r_out = r_in * np.exp(rng.uniform(0.35, 0.9, n))
        amplitude = rng.uniform(0.4, 1.6) * rng.uniform(0.4, 1.2, n)
    else:
        n = int(_choice(rng, ARM_COUNT_PROBABILITIES))
        start = max(rng.uniform(0.35, 0.9) * scale_length, bar_half_length)
        r_in = np.full(n, start)
        first = bar_angle if bar_half_length > 0 else rng.uniform(0, 2 * np.pi)
        theta0 = first + 2 * np.pi * np.arange(n) / n
        r_out = start + rng.uniform(1.6, 3.4, n) * scale_length
        amplitude = rng.uniform(0.4, 2.2) * rng.uniform(0.6, 1.2, n)
    return _Arms(
        pitch=np.radians(rng.uniform(5.0, 40.0)),
        sign=int(rng.choice([-1, 1])),
        theta0=theta0,
        r_in=r_in,
        r_out=r_out,
        width=max(rng.uniform(0.1, 0.24) * scale_length, 1.0),
        amplitude=amplitude,
        clump_amp=rng.uniform(0.0, 0.9),
        clump_freq=rng.uniform(6.0, 14.0),
        clump_phase=rng.uniform(0, 2 * np.pi, n),
        dust=rng.uniform(0.2, 0.6) if rng.random() < 0.4 else 0.0,
    )


def _arm_flux(
    rng: np.random.Generator,
    arms: _Arms,
    xd: np.ndarray,
    yd: np.ndarray,
    r: np.ndarray,
    disc_i0: float,
    scale_length: float,
    psf: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Light of the arms (Gaussian across the ridge, tapered at both ends, clumpy, with
    star-forming knots along it) and the dust-lane transmission on their inner sides."""
    theta = np.arctan2(yd, xd)
    r_safe = np.maximum(r, 1e-3)
    seen_width = np.hypot(arms.width, psf)
    light = np.zeros_like(r)
    lane = np.ones_like(r)
    for a in range(arms.n):
        offset = np.mod(theta - arms.ridge_theta(r_safe, a) + np.pi, 2 * np.pi) - np.pi
        across = r_safe * offset * np.sin(arms.pitch)  # signed distance from the ridge
        start = np.clip((r_safe - 0.75 * arms.r_in[a]) / (0.25 * arms.r_in[a]), 0, 1)
        past_end = np.clip(r_safe - arms.r_out[a], 0, None)
        envelope = start**2 * np.exp(-0.5 * (past_end / (0.25 * scale_length)) ** 2)
        clumps = 1.0 + arms.clump_amp * np.cos(arms.clump_freq * np.log(r_safe) + arms.clump_phase[a]) ** 8
        profile = (arms.width / seen_width) * np.exp(-0.5 * (across / seen_width) ** 2)
        light += arms.amplitude[a] * profile * envelope * clumps
        if arms.dust:
            inner = across + arms.sign * 0.9 * arms.width
            lane *= 1 - arms.dust * envelope * np.exp(-0.5 * (inner / np.hypot(0.35 * arms.width, psf)) ** 2)
    light *= disc_i0 * np.exp(-r_safe / (1.3 * scale_length))
    # star-forming knots on the ridges: discrete blobs, brightest where the arm is
    for a in range(arms.n):
        for radius in rng.uniform(arms.r_in[a], arms.r_out[a], int(rng.poisson(5))):
            angle = arms.ridge_theta(np.array([radius]), a)[0] + rng.normal(0, 0.03)
            light += _blob(
                xd,
                yd,
                radius * np.cos(angle),
                radius * np.sin(angle),
                np.hypot(0.5 * arms.width, psf),
                rng.uniform(0.5, 2.0) * arms.amplitude[a] * disc_i0 * np.exp(-radius / (1.3 * scale_length)),
            )
    return light, lane


def _blob(xd, yd, x0: float, y0: float, sigma: float, peak: float) -> np.ndarray:
    return peak * np.exp(-0.5 * ((xd - x0) ** 2 + (yd - y0) ** 2) / sigma**2)


def _knots(rng, xd, yd, scale_length: float, psf: float, disc_i0: float, n: int) -> np.ndarray:
    """Scattered star-forming clumps of an irregular galaxy."""
    light = np.zeros_like(xd)
    for _ in range(n):
        radius, angle = rng.uniform(0, 2.5) * scale_length, rng.uniform(0, 2 * np.pi)
        sigma = np.hypot(rng.uniform(0.1, 0.35) * scale_length, psf)
        light += _blob(
            xd, yd, radius * np.cos(angle), radius * np.sin(angle), sigma, rng.uniform(0.2, 1.0) * disc_i0
        )
    return light


def _add_neighbours(
    rng: np.random.Generator,
    flux: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    psf: float,
    size: int,
    scale: float,
) -> None:
    """Add background galaxies (small, everywhere) and now and then a companion, in place."""
    count = int(rng.poisson(2.5))
    companion = rng.random() < 0.15
    for k in range(count + companion):
        big = companion and k == count
        if big:
            angle = rng.uniform(0, 2 * np.pi)
            cx, cy = (size - 1) / 2 + rng.uniform(0.3, 0.45) * size * np.array([np.cos(angle), np.sin(angle)])
            r_eff, peak = rng.uniform(0.3, 0.8) * scale, rng.uniform(5, 40)
        else:
            cx, cy = rng.uniform(0, size, 2)
            r_eff, peak = rng.uniform(1.5, 12) * size / GZ3D_SIZE, rng.uniform(2, 25)
        neighbour = _Geometry(float(cx), float(cy), rng.uniform(0, np.pi), rng.uniform(0.3, 1.0))
        nx, ny = neighbour.to_disc(x, y)
        light = _sersic(np.sqrt(nx * nx + ny * ny + psf * psf), r_eff, rng.uniform(0.8, 4.0), peak)
        tint = COLOURS["bulge"] if rng.random() < 0.5 else COLOURS["disc"]
        flux += tint[:, None, None] * rng.uniform(0.8, 1.2, 3)[:, None, None] * light[None]


def _add_stars(
    rng: np.random.Generator, flux: np.ndarray, x: np.ndarray, y: np.ndarray, psf_sigma: float, size: int
) -> np.ndarray:
    """Add foreground stars in place (Moffat beta = 3 profiles, as seeing gives, with diffraction
    spikes and a bleed trail when bright); return their (x, y) positions."""
    n = int(rng.poisson(1.8))
    positions = rng.uniform(0.02 * size, 0.98 * size, (n, 2))
    fwhm = 2.355 * psf_sigma
    alpha = fwhm / (2 * np.sqrt(2 ** (1 / 3) - 1))
    for sx, sy in positions:
        peak = 10 ** rng.uniform(0.8, 3.8)
        tint = COLOURS["star"] * rng.uniform(0.7, 1.3, 3)
        r2 = (x - sx) ** 2 + (y - sy) ** 2
        light = peak * (1 + r2 / alpha**2) ** -3.0
        if peak > 1500:  # spikes from the secondary's supports, along the camera's axes
            length = 1.2 * fwhm * np.log10(peak)
            for along, across in ((x - sx, y - sy), (y - sy, x - sx)):
                core = np.exp(-0.5 * (across / (0.3 * fwhm)) ** 2)
                light += 0.004 * peak * np.exp(-np.abs(along) / length) * core
        if peak > 4000:  # charge bleeding along the CCD columns
            column = np.exp(-0.5 * ((x - sx) / (0.4 * fwhm)) ** 2)
            light += 0.02 * peak * np.exp(-np.abs(y - sy) / (3 * fwhm)) * column
        flux += tint[:, None, None] * light[None]
    return positions


# ----------------------------------------------------------------------------- volunteers


ENGAGEMENT_HALF = 11.0
"""Arm visibility (the brightest arm's light above the disc, in sky sigmas, times sqrt(q)) at which
half the volunteers draw arms: about half draw on the median spiral (docs/synthetic.md, volunteers)."""
ENGAGEMENT_SLOPE = 1.9
"""Logit of the drawing share per e-fold of visibility: a few volunteers draw on the faintest tenth
of spirals, nearly all on the brightest tenth."""
ENGAGEMENT_SCATTER = 0.8
"""Logit scatter of the drawing share between galaxies of the same visibility (who happened to
classify it, how it looked in the colour image)."""


def _engagement(rng: np.random.Generator, visibility: float) -> float:
    """Share of a galaxy's volunteers who draw arms: more where arms stand out, widely spread."""
    if visibility <= 0:
        return 0.0
    logit = ENGAGEMENT_SLOPE * np.log(visibility / ENGAGEMENT_HALF) + rng.normal(0.0, ENGAGEMENT_SCATTER)
    return float(1.0 / (1.0 + np.exp(-logit)))


@dataclass
class _Volunteers:
    """Draws each volunteer's outlines, as the Zooniverse drawing tool would have recorded them."""

    rng: np.random.Generator
    geometry: _Geometry
    size: int
    arms: _Arms | None
    disc_i0: float
    scale_length: float
    kind: str
    bar_half_length: float
    bar_angle: float

    def __post_init__(self) -> None:
        self.n = int(self.rng.integers(13, 18))

    def spiral_paths(self) -> list[list[np.ndarray]]:
        """Each volunteer's arm outlines. How many of the ~15 draw at all varies widely from galaxy
        to galaxy, and more of them draw where the arms stand out (GZ:3D asked for arms only of
        those who saw a spiral, and people see what stands out); each drawer has their own care
        (outline width, offset, wobble), depth (faintest arm seen) and skips some arms."""
        rng, arms = self.rng, self.arms
        false_rate = {"smooth_disc": 0.004, "edge_on": 0.002, "irregular": 0.015}.get(self.kind, 0.0007)
        peaks = np.zeros(0)
        if arms is not None:  # each arm's light above the disc at its start, in sky sigmas, seen at q
            peaks = arms.amplitude * self.disc_i0 * np.exp(-arms.r_in / (1.3 * self.scale_length))
            peaks = peaks * self.geometry.q**0.5
        engagement = _engagement(rng, float(peaks.max()) if peaks.size else 0.0)
        drawings = []
        for _ in range(self.n):
            paths: list[np.ndarray] = []
            draws = rng.random() < engagement
            limit = rng.uniform(1.0, 6.0)  # faintest arm flux (sky sigmas) this volunteer sees
            width_factor = np.exp(rng.normal(np.log(1.9), 0.45))
            skip = rng.uniform(0.0, 0.35)  # arms this volunteer leaves out though they see them
            if arms is not None and draws:
                for k in range(arms.n):
                    p_see = 1.0 / (1.0 + np.exp(-(peaks[k] - limit)))
                    if rng.random() > p_see * (1 - skip):
                        continue
                    # arm visible out to where its light falls to the volunteer's limit
                    r_visible = (
                        1.3 * self.scale_length * np.log(max(self.disc_i0 * arms.amplitude[k] / limit, 1.0))
                    )
                    r_end = min(arms.r_out[k], r_visible) * np.exp(rng.normal(0.0, 0.25))
                    r_start = arms.r_in[k] * np.exp(rng.normal(0.05, 0.18))
                    if r_end < 1.3 * r_start:
                        continue
                    for _ in range(2 if rng.random() < 0.03 else 1):
                        paths.append(self._arm_outline(k, r_start, r_end, width_factor))
            if rng.random() < false_rate:
                paths.append(self._false_arm())
            drawings.append(paths)
        return drawings

    def _arm_outline(self, k: int, r_start: float, r_end: float, width_factor: float) -> np.ndarray:
        rng, arms = self.rng, self.arms
        assert arms is not None
        radii = np.geomspace(r_start, r_end, 28)
        theta = arms.ridge_theta(radii, k) + rng.normal(0.0, 0.04)
        # nobody outlines an arm wider than the gap to the next one (tight windings)
        spacing = radii * (2 * np.pi / max(arms.n, 2)) * np.sin(arms.pitch)
        half_width = np.minimum(arms.width * width_factor, 0.35 * spacing)
        outline = self._ribbon(radii, theta, half_width, rng.normal(0.0, 0.5 * arms.width), 0.35 * arms.width)
        if rng.random() < P_OVERSHOOT:
            outline = _overshoot(outline)
        return outline

    def _false_arm(self) -> np.ndarray:
        rng = self.rng
        radii = np.geomspace(1.0, rng.uniform(1.5, 2.5), 16) * self.scale_length
        theta = rng.uniform(0, 2 * np.pi) + rng.choice([-1, 1]) * np.log(radii / radii[0]) / np.tan(
            np.radians(rng.uniform(10, 35))
        )
        return self._ribbon(radii, theta, rng.uniform(0.15, 0.35) * self.scale_length, 0.0, 0.0)

    def _ribbon(
        self,
        radii: np.ndarray,
        theta: np.ndarray,
        half_width: float | np.ndarray,
        offset: float,
        wobble: float,
    ) -> np.ndarray:
        """Closed outline around a ridge (disc plane), with the volunteer's shift and hand wobble."""
        rng = self.rng
        px, py = radii * np.cos(theta), radii * np.sin(theta)
        tx, ty = np.gradient(px), np.gradient(py)
        norm = np.hypot(tx, ty) + 1e-12
        nx, ny = -ty / norm, tx / norm
        t = np.linspace(0, 1, radii.size)
        shift = offset + wobble * np.sin(2 * np.pi * (rng.uniform(1, 3) * t + rng.uniform(0, 1)))
        taper = np.minimum(1.0, 0.35 + 3.0 * np.minimum(t, 1 - t))
        left = (px + nx * (shift + half_width * taper), py + ny * (shift + half_width * taper))
        right = (px + nx * (shift - half_width * taper), py + ny * (shift - half_width * taper))
        xd = np.concatenate([left[0], right[0][::-1]])
        yd = np.concatenate([left[1], right[1][::-1]])
        sx, sy = self.geometry.to_sky(xd, yd)
        return np.stack([sx, sy], axis=1)

    def bar_paths(self) -> list[list[np.ndarray]]:
        rng = self.rng
        drawings = []
        for _ in range(self.n):
            paths = []
            if self.bar_half_length > 0 and rng.random() < 0.65:
                t = np.linspace(0, 2 * np.pi, 20, endpoint=False)
                length = self.bar_half_length * np.exp(rng.normal(0.0, 0.15))
                width = 0.3 * self.bar_half_length * np.exp(rng.normal(0.0, 0.25))
                c, s = np.cos(self.bar_angle), np.sin(self.bar_angle)
                bx, by = length * np.cos(t), width * np.sin(t)
                sx, sy = self.geometry.to_sky(bx * c - by * s, bx * s + by * c)
                paths.append(np.stack([sx, sy], axis=1))
            elif rng.random() < 0.01:
                t = np.linspace(0, 2 * np.pi, 12, endpoint=False)
                sx, sy = self.geometry.to_sky(
                    0.6 * self.scale_length * np.cos(t), 0.15 * self.scale_length * np.sin(t)
                )
                paths.append(np.stack([sx, sy], axis=1))
            drawings.append(paths)
        return drawings


P_OVERSHOOT = 0.6
"""Share of arm outlines whose closing stroke runs on past the start; about two in three of those
cross their first edge, so about 40% of outlines cross themselves, as 6 of the 15 of the one real
file with arms (1-1747), and the production rule drops them from HDU 3 as it does there."""


def _overshoot(outline: np.ndarray) -> np.ndarray:
    """The outline with its end dragged across its first edge, as a hurried hand closes it."""
    edge = outline[1] - outline[0]
    outward = np.array([-edge[1], edge[0]])  # across the first edge, away from the last vertex
    if np.dot(outward, outline[0] - outline[-1]) < 0:
        outward = -outward
    reach = max(np.hypot(*(outline[0] - outline[-1])), 1.0)
    past = 0.5 * (outline[0] + outline[1]) + outward / (np.hypot(*outward) + 1e-12) * reach
    return np.vstack([outline, past[None]])


def _clusters(points_per_object: list[np.ndarray], wcs, shape: tuple[int, int]) -> tuple[Table, np.ndarray]:
    """Cluster table (HDU 6/7) and mask (HDU 1/2): a 2-sigma ellipse valued by the click count."""
    rows = []
    mask = np.zeros(shape)
    for clicks in points_per_object:
        if len(clicks) < 3:
            continue
        mean = clicks.mean(axis=0)
        cov = np.cov(clicks.T) + np.eye(2) * 0.25
        ra, dec = wcs.wcs_pix2world(mean[0], mean[1], 0)
        scale = np.abs(wcs.wcs.cd[0, 0])
        rows.append(
            (
                mean[0],
                mean[1],
                cov[0, 0],
                cov[1, 1],
                cov[0, 1],
                float(ra),
                float(dec),
                cov[0, 0] * scale**2,
                cov[1, 1] * scale**2,
                cov[0, 1] * scale**2,
                len(clicks),
            )
        )
        eigval, eigvec = np.linalg.eigh(cov)
        t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        ellipse = (eigvec @ (2 * np.sqrt(eigval)[:, None] * np.stack([np.cos(t), np.sin(t)]))).T
        one = np.zeros(shape)
        add_polygon(one, ellipse + mean)
        mask = np.maximum(mask, one * len(clicks))
    dtypes = ["f8"] * 10 + ["i8"]
    table = Table(rows=rows or None, names=CLUSTER_COLUMNS, dtype=dtypes)
    return table, mask


def _paths_table(ids: np.ndarray, stamps: list[str], column: str, drawings: list[list[np.ndarray]]) -> Table:
    return Table(
        {
            "classification_id": ids,
            "time_stamp": np.array(stamps, dtype="S19"),
            column: np.array([encode_paths(p) for p in drawings], dtype=bytes),
        }
    )


def _as_gz3d(
    rng: np.random.Generator,
    seed: int,
    index: int,
    image: np.ndarray,
    volunteers: _Volunteers,
    stars: np.ndarray,
    truth: Truth,
) -> GZ3DGalaxy:
    size = image.shape[0]
    shape = (size, size)
    # the outlines as stored (0.01 px) are what the masks are made of
    spiral_drawings = [[np.round(p, 2) for p in d] for d in volunteers.spiral_paths()]
    bar_drawings = [[np.round(p, 2) for p in d] for d in volunteers.bar_paths()]
    spiral_votes = rasterise_outlines((p for d in spiral_drawings for p in d), shape)
    bar_votes = rasterise_outlines((p for d in bar_drawings for p in d), shape)
    n = volunteers.n

    ra, dec = rng.uniform(0.0, 360.0), np.degrees(np.arcsin(rng.uniform(-0.2, 0.95)))
    wcs = make_wcs(ra, dec, shape)
    ids = np.sort(rng.choice(10**9, n, replace=False)).astype(np.int64) + 10**8
    start = np.datetime64("2017-01-11T00:00:00") + np.int64(rng.integers(0, 3 * 10**7))
    stamps = [str(start + np.int64(s))[:19] for s in np.sort(rng.integers(0, 10**6, n))]
    centre_clicks = np.array([truth.centre_x, truth.centre_y]) + rng.normal(0, 0.006 * size, (n, 2))
    star_clicks = [sp + rng.normal(0, 0.004 * size, (int((rng.random(n) < 0.7).sum()), 2)) for sp in stars]
    center_table, center_mask = _clusters([centre_clicks], wcs, shape)
    star_table, star_mask = _clusters(star_clicks, wcs, shape)
    clicks = Table(
        {
            "classification_id": ids,
            "time_stamp": np.array(stamps, dtype="S19"),
            "center_points": np.array(
                [json.dumps([[round(float(a), 2), round(float(b), 2)]]) for a, b in centre_clicks],
                dtype=bytes,
            ),
            "star_points": np.array(["[]"] * n, dtype=bytes),
        }
    )
    name = mangaid(seed, index)
    ifu = float(file_name(seed, index).split("_")[1])
    ra_h = ra / 15.0
    iau = (
        f"J{int(ra_h):02d}{int(ra_h * 60) % 60:02d}{(ra_h * 3600) % 60:05.2f}"
        f"{'+' if dec >= 0 else '-'}{int(abs(dec)):02d}{int(abs(dec) * 60) % 60:02d}"
        f"{(abs(dec) * 3600) % 60:04.1f}"
    )
    metadata = metadata_table(
        {
            "ra": ra,
            "dec": dec,
            "MANGAID": name,
            "IAUNAME": iau,
            "IFUDESIGNSIZE": ifu,
            "MANGA_TILEID": float(rng.integers(7000, 12000)),
            "nsa_id": int(rng.integers(10**5, 10**6)),
            "explorer_link": f"synthetic galaxy {name}: no explorer page",
            # counts classifications of every GZ:3D workflow, not drawers: 33, 42 and 50 against
            # 15 volunteers' rows in the three real files
            "GZ_total_classifications": int(round(n * rng.uniform(2.2, 3.4))),
            "GZ_bar_votes": sum(1 for d in bar_drawings if d),
            "GZ_spiral_votes": sum(1 for d in spiral_drawings if d),
            "sample": f"synthetic galseg {__version__} seed {seed}",
        },
        extra={column: (getattr(truth, field), dtype) for field, (column, dtype) in TRUTH_COLUMNS.items()},
    )
    return GZ3DGalaxy(
        image=image,
        center_mask=center_mask,
        star_mask=star_mask,
        spiral_votes=spiral_votes,
        bar_votes=bar_votes,
        metadata=metadata,
        center_clusters=center_table,
        star_clusters=star_table,
        clicks=clicks,
        spiral_paths=_paths_table(ids, stamps, "spiral_paths", spiral_drawings),
        bar_paths=_paths_table(ids, stamps, "bar_paths", bar_drawings),
        wcs=wcs,
    )


# ----------------------------------------------------------------------------- writing a set


def _write_one(args: tuple[Path, int, int, int, World]) -> Path:
    out, seed, index, size, world = args
    path = out / file_name(seed, index)
    if not path.exists():  # resumable: files appear only when complete (atomic write)
        write_gz3d(path, synthesize(index, seed=seed, size=size, world=world)[0])
    return path


def write_synthetic(
    out: str | os.PathLike[str],
    *,
    n: int,
    seed: int = 0,
    size: int = GZ3D_SIZE,
    workers: int | None = None,
    world: World = World(),
) -> Iterator[Path]:
    """Write galaxies 0..n-1 of ``seed`` (in ``world``) as GZ:3D files under ``out``; yields each
    path as done.

    Files already present are kept, so an interrupted run resumes where it stopped.
    ``workers`` processes (default: every core) share the work.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(out, seed, i, size, world) for i in range(n)]
    workers = workers or os.cpu_count() or 1
    if workers <= 1 or n < 16:
        yield from map(_write_one, jobs)
        return
    with ProcessPoolExecutor(workers, initializer=die_with_parent) as pool:
        yield from pool.map(_write_one, jobs, chunksize=8)


def truth_from_metadata(metadata: Table) -> Truth | None:
    """The generator's truth stored in a synthetic file's metadata, or None for a real galaxy."""
    if "SYNTH_KIND" not in metadata.colnames:
        return None
    values = {}
    for field, (column, dtype) in TRUTH_COLUMNS.items():
        if column not in metadata.colnames:
            continue  # written before the column existed: the field's default
        value = metadata[column][0]
        if dtype.startswith("S"):
            value = (value.decode() if isinstance(value, bytes) else str(value)).strip()
        values[field] = (
            bool(value)
            if dtype == "?"
            else int(value)
            if dtype.startswith("i")
            else (value if dtype.startswith("S") else float(value))
        )
    return Truth(**values)
