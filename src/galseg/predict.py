"""Prediction, the survey path: image files in, arm (and bar) masks and one catalogue out.

Every input gets ``masks/NAME-HASH.fits.gz`` (masks, probabilities, statistics and arms on the
input's own grid, with its WCS) and rows in the catalogue. NAME is the file's stem made safe,
HASH a digest of the input's absolute path, so two inputs never share an output. Each mask
file records the run, the input and its size and time stamp; a rerun reuses a mask only when
all of them still match, so resuming never mixes in another run's or another file's results.
One unreadable or odd input becomes an error row, never the end of the run.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import io
import multiprocessing
import os
import warnings
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from astropy.io import fits
from astropy.io.fits.verify import VerifyError
from astropy.table import Table, vstack
from astropy.wcs import WCS, FITSFixedWarning
from astropy.wcs.utils import proj_plane_pixel_scales
from threadpoolctl import threadpool_limits

from galseg import GalsegError, __version__
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
from galseg.footprint import drop_pieces, footprint, galaxy_region, outside_galaxy
from galseg.gz3d import (
    bintable_bytes,
    ifu_design_size,
    image_bytes,
    read_gz3d,
    volunteer_hints,
    wcs_header,
)
from galseg.inference import CUT, Predictor, by_structure, clean_image, combine_zooms, zoom_views
from galseg.io import (
    atomic_path,
    atomic_write_bytes,
    check_fits_layout,
    check_pixels,
    die_with_parent,
    gzip_bytes,
    one_line,
    only_writer,
    progress,
    read_bytes,
    read_picture,
    stretch_to_uint8,
)
from galseg.orient import (
    IDENTITY,
    Orientation,
    canonical,
    measurements_back,
    stats_back,
    turn_back,
    turn_source,
)

# ----------------------------------------------------------------------------- inputs

IMAGE_SUFFIXES = (".fits.gz", ".fits", ".fit", ".fts", ".png", ".jpg", ".jpeg")
LIST_SUFFIXES = (".txt", ".lst", ".list")
MIN_SIDE_PX = 8
"""Smaller images hold no structure a network could mark (it resizes them up, blurring)."""


def _is_image(path: Path) -> bool:
    return path.name.lower().endswith(IMAGE_SUFFIXES)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def printable(text: str) -> str:
    """``text`` as printable ASCII (FITS cards and every catalogue format take it): other
    characters, newlines and undecodable bytes of file names become backslash escapes."""
    escaped = text.encode("ascii", "backslashreplace").decode("ascii")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in escaped)


def _list_bytes(path: Path) -> bytes:
    """A list file's bytes as the file system spells paths: UTF-16 and UTF-32 (as Windows editors
    save text, with a byte-order mark) re-encoded, a UTF-8 byte-order mark dropped."""
    data = read_bytes(path, inflate=False)
    for bom, codec in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            try:
                return os.fsencode(data.decode(codec))
            except UnicodeDecodeError as exc:
                raise GalsegError(f"{path}: not valid {codec.upper()} text ({exc.reason})") from exc
    data = data.removeprefix(codecs.BOM_UTF8)
    if b"\0" in data:
        raise GalsegError(
            f"{path}: the list holds NUL bytes; save it as plain text (UTF-8), one path per line"
        )
    return data


def expand_inputs(inputs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files, folders (searched recursively) and text files listing paths, in a stable order.

    A list file is read as the file system's bytes (any encoding, one path per line, ``#``
    comments); relative paths are relative to the list. The same file given twice is kept once.
    """
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found.extend(
                sorted(
                    p for p in item.rglob("*") if p.is_file() and _is_image(p) and not p.name.startswith(".")
                )
            )
        elif item.name.lower().endswith(LIST_SUFFIXES) and item.is_file():
            try:
                lines = _list_bytes(item).splitlines()
            except OSError as exc:
                raise GalsegError(f"{item}: cannot read the list ({exc.strerror})") from exc
            for line in lines:
                line = line.strip()
                if line and not line.startswith(b"#"):
                    path = Path(os.fsdecode(line))
                    found.append(path if path.is_absolute() else item.parent / path)
        else:
            found.append(item)  # missing or unreadable files get an error row later
    unique = dict.fromkeys(found)  # paths as given, in order; equal paths once
    return list(unique)


def output_name(path: Path) -> str:
    """``STEM-HASH``: the stem made safe and short, and 8 hex digits of the absolute path, so two
    inputs never map to one output (``x.png`` and ``x_2.png``, ``a/x.png`` and ``b/x.png``)."""
    stem = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in _stem(path))
    digest = hashlib.sha256(os.fsencode(os.path.abspath(path))).hexdigest()[:8]
    return f"{stem.strip('._')[:48] or 'image'}-{digest}"


@dataclass
class InputImage:
    """One input, read: its name, RGB pixels, WCS (or None) and where it came from."""

    name: str
    image: np.ndarray  # (H, W, 3) uint8
    wcs: WCS | None
    source: str
    warning: str = ""
    centre: tuple[float, float] | None = None  # the volunteers' centre clicks (GZ:3D HDU 6)
    stars: np.ndarray | None = None  # their stars: x, y, radius rows (GZ:3D HDU 7)
    ifu: float | None = None  # GZ:3D IFUDESIGNSIZE: the size of the hexagon burned in


def _read_fits_image(path: Path, hdul: fits.HDUList) -> tuple[np.ndarray, WCS | None]:
    hdu = next((h for h in hdul if h.is_image and h.header.get("NAXIS", 0) in (2, 3)), None)
    if hdu is None:
        raise GalsegError(f"{path}: no 2-D image or 3-plane cube in any HDU")
    shape = hdu.shape  # from the header, before any data is decoded
    check_pixels(shape[:2] if len(shape) == 3 and shape[-1] == 3 else shape[-2:], name=str(path))
    data = np.asarray(hdu.data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(hdu.header, naxis=2)
    wcs = wcs if wcs.has_celestial else None
    if data.ndim == 3:
        if data.shape[-1] == 3:  # rows, columns, RGB (as GZ:3D's HDU 0)
            planes = data
        elif data.shape[0] == 3:  # a band cube, bluest first (g, r, i): shown as B, G, R
            planes = np.moveaxis(data[::-1], 0, -1)
        else:
            raise GalsegError(
                f"{path}: a cube needs 3 planes (rows x columns x 3 or 3 x rows x columns), "
                f"found {data.shape}"
            )
    else:
        planes = np.repeat(data[..., None], 3, axis=2)
    image = planes if planes.dtype == np.uint8 else stretch_to_uint8(planes)
    return image, wcs


def read_input(path: str | os.PathLike[str]) -> InputImage:
    """Read a GZ:3D file, a plain FITS image or cube, or a PNG/JPEG cutout as 8-bit RGB.

    Every read is bounded (:mod:`galseg.io`): file size, inflated size and pixel count.
    """
    path = Path(path)
    name = _stem(path)
    centre = stars = ifu = None
    if path.name.lower().endswith((".png", ".jpg", ".jpeg")):
        image, wcs = read_picture(path), None
    else:
        raw = read_bytes(path)
        check_fits_layout(raw, name=str(path))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with fits.open(io.BytesIO(raw), memmap=False) as hdul:
                    # GZ:3D's primary: an 8-bit H x W x 3 image (NAXIS1 = 3) with extensions; a
                    # file like that with too few HDUs is a broken GZ:3D file, for read_gz3d to
                    # refuse, not an image to predict
                    primary = hdul[0].header
                    is_gz3d = len(hdul) > 1 and (primary.get("NAXIS"), primary.get("NAXIS1")) == (3, 3)
                    if not is_gz3d:
                        image, wcs = _read_fits_image(path, hdul)
        except GalsegError:
            raise
        except (OSError, EOFError, ValueError, TypeError, IndexError, KeyError) as exc:
            raise GalsegError(f"{path}: not a readable FITS image ({one_line(exc)})") from exc
        if is_gz3d:
            galaxy = read_gz3d(path, outlines=False, raw=raw, votes=False)
            name, image, wcs = galaxy.mangaid, galaxy.image, galaxy.wcs
            centre, stars = volunteer_hints(galaxy)
            ifu = ifu_design_size(galaxy.metadata)
    if min(image.shape[:2]) < MIN_SIDE_PX:
        raise GalsegError(
            f"{path}: {image.shape[1]} x {image.shape[0]} pixels is too small "
            f"(galseg needs at least {MIN_SIDE_PX} x {MIN_SIDE_PX})"
        )
    warning = "the image is constant: nothing to find" if image.min() == image.max() else ""
    return InputImage(
        printable(name), np.ascontiguousarray(image), wcs, str(path), warning, centre, stars, ifu
    )


# ----------------------------------------------------------------------------- many files

PROBABILITY_SCALE = 255
"""Probability maps are stored as uint8: P = value / 255 (a quarter of float32 on disk)."""
STAT_COLUMNS = (
    "TH",
    "HAS_ARMS",
    "ARM_PIXELS",
    "ARM_FRACTION_IMAGE",
    "ARM_FRACTION_FOOTPRINT",
    "MEAN_ARM_PROBABILITY",
    "N_ARMS",
    "PITCH_DEG",
    "PITCH_ERR_DEG",
    "CHIRALITY",
    "CHIRALITY_AGREEMENT",
    "ARM_COUNT",
)
STAT_DTYPES = ("i2", "?", "i8", "f4", "f4", "f4", "i2", "f4", "f4", "U1", "f4", "i2")
BAR_COLUMNS = (
    "HAS_BAR",
    "BAR_PIXELS",
    "BAR_LENGTH_PX",
    "BAR_LENGTH_ARCSEC",
    "BAR_PA_DEG",
    "BAR_AXIS_RATIO",
    "BAR_DEPROJ_LENGTH_PX",
    "BAR_LIGHT_FRACTION",
)
BAR_DTYPES = ("?", "i8", "f4", "f4", "f4", "f4", "f4", "f4")


def stat_columns(structures: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(names, dtypes) of a catalogue row's per-threshold columns for a run's structures: TH, then
    the arm columns (spiral), then the bar columns (bar)."""
    names, dtypes = ["TH"], ["i2"]
    if "spiral" in structures:
        names += STAT_COLUMNS[1:]
        dtypes += STAT_DTYPES[1:]
    if "bar" in structures:
        names += BAR_COLUMNS
        dtypes += BAR_DTYPES
    return tuple(names), tuple(dtypes)


ARM_FIELDS = (
    "PITCH_DEG",
    "PITCH_ERR_DEG",
    "CHIRALITY",
    "EXTENT_DEG",
    "R_MIN_PX",
    "R_MAX_PX",
    "LENGTH_PX",
    "LENGTH_ARCSEC",
    "AREA_PX",
    "LIGHT_FRACTION",
    "THETA0",
    "SLOPE",
)
ARM_COLUMNS = ("ORDER", "NAME", "SOURCE", "TH", "ARM", *ARM_FIELDS)
ARM_DTYPES = (
    "i8",
    "U64",
    "U256",
    "i2",
    "i2",
    "f4",
    "f4",
    "U1",
    "f4",
    "f4",
    "f4",
    "f4",
    "f4",
    "i8",
    "f4",
    "f8",
    "f8",
)


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


def arms_table(arms: dict[int, tuple[list[Arm], ArmSummary]]) -> Table:
    """Every fitted arm of one galaxy, one row each, at every threshold."""
    rows = [
        {"TH": th, "ARM": n + 1, **{k.upper(): v for k, v in arm.as_row().items()}}
        for th, (found, _) in arms.items()
        for n, arm in enumerate(found)
    ]
    if not rows:
        return Table(names=("TH", "ARM", *ARM_FIELDS), dtype=ARM_DTYPES[3:])
    table = Table(rows=rows)
    for name, dtype in zip(("TH", "ARM", *ARM_FIELDS), ARM_DTYPES[3:], strict=True):
        table[name] = table[name].astype(dtype)  # the same column types with or without arms
    return table


def geometry_cards(geometry: DiscGeometry) -> list[tuple]:
    """The disc geometry the arms (and bar) were measured with, as header cards of ARMS."""
    return [
        ("CENTX", geometry.x, "disc centre, image x (0-based)"),
        ("CENTY", geometry.y, "disc centre, image y (0-based, down)"),
        ("AXRATIO", geometry.axis_ratio, "disc axis ratio b/a from light moments"),
        ("PA_RAD", geometry.position_angle, "major axis, anticlockwise from image x as shown"),
        ("CHIRCONV", "Z: arms turn anticlockwise outward as displayed (row 0 at top)"),
    ]


PLANE_NAMES = {"spiral": ("MASK_TH", "PROB", "UNCERT"), "bar": ("BAR_TH", "BARPROB", "BARUNCRT")}
"""HDU names per structure: masks (one per threshold), probabilities, their spread under TTA."""


def mask_file_bytes(
    planes: dict[str, np.ndarray],
    thresholds: Sequence[int],
    wcs: WCS | None,
    stats: Table,
    provenance: dict[str, object],
    *,
    spread: dict[str, np.ndarray] | None = None,
    arms: Table | None = None,
    geometry: DiscGeometry | None = None,
    cut: float = CUT,
) -> bytes:
    """The per-galaxy output as FITS bytes: a primary header (WCS, provenance); per structure
    ({"spiral": (T, H, W), "bar": ...}) one uint8 mask per threshold, the probabilities (and
    their spread), each with the WCS; the statistics (STATS); the fitted arms (ARMS, with the
    disc geometry in its header) when measured."""
    wcs_text = wcs_header(wcs).tostring(endcard=False, padding=False) if wcs is not None else ""
    provenance_cards = [(key[:8].upper(), value) for key, value in provenance.items()]
    parts = [image_bytes(None, primary=True, text=wcs_text, cards=provenance_cards)]
    for structure, probabilities in planes.items():
        mask_name, prob_name, spread_name = PLANE_NAMES[structure]
        for k, th in enumerate(thresholds):
            parts.append(
                image_bytes(
                    (probabilities[k] > cut).astype(np.uint8),
                    name=f"{mask_name}{th}",
                    text=wcs_text,
                    cards=[
                        ("THRESH", th, f"{structure} where P(votes >= THRESH) > CUT"),
                        ("CUT", cut, "probability cut-off of the mask"),
                    ],
                )
            )
        cards = [
            ("PSCALE", PROBABILITY_SCALE, "P(votes >= th) = value / PSCALE"),
            ("STRUCT", structure, "what the volunteers outlined"),
            *[(f"THRESH{k + 1}", th, f"vote threshold of plane {k + 1}") for k, th in enumerate(thresholds)],
        ]
        scaled = np.rint(probabilities * PROBABILITY_SCALE).astype(np.uint8)
        parts.append(image_bytes(scaled, name=prob_name, text=wcs_text, cards=cards))
        if spread is not None:
            scaled = np.rint(spread[structure] * PROBABILITY_SCALE).astype(np.uint8)
            cards = [("PSCALE", PROBABILITY_SCALE, "std of P over 8 orientations = value / PSCALE")]
            parts.append(image_bytes(scaled, name=spread_name, text=wcs_text, cards=cards))
    parts.append(bintable_bytes(stats, extname="STATS"))
    if arms is not None and geometry is not None:
        parts.append(bintable_bytes(arms, extname="ARMS", cards=geometry_cards(geometry)))
    return b"".join(parts)


class _Inputs(torch.utils.data.Dataset):
    """Reads and shrinks one input per item in DataLoader workers, so reading overlaps the nets."""

    def __init__(self, paths: Sequence[Path], predictor: Predictor) -> None:
        # plain values only: the workers must not carry the networks
        self.paths, self.size, self.zooms = list(paths), predictor.size, predictor.zooms
        self.hexagon = predictor.hexagon

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        path = self.paths[i]
        try:
            item = read_input(path)
            # predicted and measured in the one orientation that a mirror or a turn of this image
            # reaches too (galseg.orient), so a mirrored galaxy gets mirrored answers
            orientation = canonical(item.image)
            item = turn_source(item, orientation)
            # measured, drawn and predicted alike on the image the network sees
            item = replace(item, image=clean_image(item.image, self.hexagon, item.ifu))
            area = footprint(item.image)
            return {
                "i": i,
                "input": item,
                "orientation": orientation,
                "small": zoom_views(item.image, self.zooms, self.size),
                "footprint": area,
                "region": galaxy_region(item.image, area),
                "error": None,
            }
        except GalsegError as exc:
            return {"i": i, "error": printable(str(exc))}
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop a survey
            return {"i": i, "error": printable(f"{path}: {type(exc).__name__}: {one_line(exc)}")}


def _input_stamp(path: Path) -> tuple[int, int]:
    """(bytes, modification time in ns) of an input: a changed file is predicted again."""
    try:
        stat = path.stat()
    except OSError:
        return -1, -1
    return int(stat.st_size), int(stat.st_mtime_ns)


def _finished(target: Path, run_id: str, stamp: tuple[int, int]) -> tuple | None:
    """What the catalogue needs of ``target`` (:func:`_read_back`'s first five) if it is this run's
    complete, undamaged output for this very input, else None (redo it). The whole file is read
    once, here, so a damaged mask file left by a crash or a bad disk is redone instead of stopping
    the rerun, and the catalogue needs no second reading."""
    if not target.exists():
        return None
    try:
        *back, header = _read_back(target)
    except (OSError, ValueError, EOFError, KeyError, TypeError, zlib.error):
        return None
    same = header.get("RUNID") == run_id and (header.get("INBYTES"), header.get("INMTIME")) == stamp
    return tuple(back) if same else None


@dataclass
class _Finish:
    """What the pool needs to finish one galaxy after the network: its probabilities at the
    network's size (small to send; one set per zoom), the input, and where the result goes."""

    index: int
    source: InputImage
    footprint: np.ndarray
    region: np.ndarray | None  # the galaxy's own region (galseg.footprint): pieces not reaching it go
    p_small: np.ndarray
    spread_small: np.ndarray | None
    thresholds: tuple[int, ...]
    structures: tuple[str, ...]
    zooms: tuple[float, ...]
    target: Path
    overlay_path: Path | None
    overlay: Callable[..., object] | None
    measure: bool
    provenance: dict
    cut: float = CUT
    orientation: Orientation = IDENTITY  # how ``source`` was turned (galseg.orient); answers turn back


def _post_worker() -> None:
    die_with_parent()
    # the network has the cores; each post worker takes one, for torch and for the BLAS under
    # numpy and scipy (the disc fit's least squares): threads of several processes spinning
    # against each other cut predict from 11.7 to 3.3 galaxies/s (benchmarks/bench_predict.py)
    torch.set_num_threads(1)
    threadpool_limits(1)


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


def _turned_back(orientation: Orientation, source: InputImage, planes, spread, stats: Table, geometry, arms):
    """One galaxy's answers, found on its canonical orientation, in the input's own: the image
    and the planes exactly, the statistics (in place), the disc and the arms."""
    if orientation == IDENTITY:
        return source, planes, spread, geometry, arms
    source = turn_source(source, orientation, back=True)

    def back(by: dict[str, np.ndarray] | None) -> dict[str, np.ndarray] | None:
        return (
            None
            if by is None
            else {s: np.ascontiguousarray(turn_back(p, orientation, axes=(1, 2))) for s, p in by.items()}
        )

    stats_back(orientation, stats)
    geometry, arms = measurements_back(orientation, geometry, arms, source.image.shape[:2])
    return source, back(planes), back(spread), geometry, arms


def _finish(work: _Finish) -> tuple[int, tuple | None, str | None, bool]:
    """Masks, statistics, arms and bar of one galaxy, written whole; returns (index, what the
    catalogue needs, None, False) or (index, None, the error, whether it stops the run: a write
    that failed, e.g. a full disk, would fail for every galaxy after it)."""
    try:
        source, thresholds, shape = work.source, work.thresholds, work.source.image.shape[:2]

        p = combine_zooms(work.p_small, work.zooms, shape)  # network grid -> input grid
        drop = outside_galaxy(p, work.region, work.cut)

        def full(values: np.ndarray) -> dict[str, np.ndarray]:  # (P, H, W) -> by structure, pieces dropped
            return by_structure(drop_pieces(values, drop), work.structures, len(thresholds))

        planes = full(p)
        # the spread: the largest over the zooms, the most doubtful view
        spread = (
            full(combine_zooms(work.spread_small, work.zooms, shape))
            if work.spread_small is not None
            else None
        )
        stats, geometry, arms = galaxy_statistics(
            source, planes, thresholds, work.footprint, measure=work.measure, cut=work.cut
        )
        source, planes, spread, geometry, arms = _turned_back(
            work.orientation, source, planes, spread, stats, geometry, arms
        )
        measured_arms = geometry is not None and "spiral" in planes
        arm_rows = arms_table(arms) if measured_arms else None
        data = mask_file_bytes(
            planes,
            thresholds,
            source.wcs,
            stats,
            work.provenance,
            spread=spread,
            arms=arm_rows,
            geometry=geometry,
            cut=work.cut,
        )
        try:
            atomic_write_bytes(work.target, gzip_bytes(data))
        except OSError as exc:
            return work.index, None, f"{work.target}: cannot write: {exc.strerror or one_line(exc)}", True
        if work.overlay is not None:
            bar = planes.get("bar")
            first = planes.get("spiral", bar)
            work.overlay(
                source,
                first,
                thresholds,
                work.overlay_path,
                arms=arms,
                geometry=geometry,
                bar=bar,
                cut=work.cut,
            )
        return (
            work.index,
            (
                source.name,
                source.image.shape[:2],
                stats.as_array(),  # plain structured arrays: a Table per galaxy would grow memory
                arm_rows.as_array() if arm_rows is not None else None,
                source.warning,
            ),
            None,
            False,
        )
    except OSError as exc:  # the overlay's file
        return work.index, None, f"{exc.filename or work.overlay_path}: cannot write: {exc.strerror}", True
    except Exception as exc:  # noqa: BLE001 - one odd galaxy must not lose the others
        return (
            work.index,
            None,
            f"{printable(work.source.source)}: {type(exc).__name__}: {printable(one_line(exc))}",
            False,
        )


def predict_files(
    predictor: Predictor,
    inputs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    catalogue: str = "catalogue.ecsv",
    batch_size: int = 16,
    workers: int = 2,
    overlay: Callable[..., object] | None = None,
    tta: bool = False,
    measure_arms_too: bool = True,
    show_progress: bool = True,
) -> Table:
    """Predict every input into ``out``: ``masks/NAME-HASH.fits.gz`` per galaxy and one catalogue.

    Inputs this run already wrote are skipped (rerun to resume); unreadable ones get a row with
    their error. Under torchrun each rank takes every world-th input and writes its own catalogue
    part; rank 0 merges the parts in input order. Returns the merged catalogue (rank 0) or this
    rank's. With ``tta`` the masks come from the mean over the eight orientations and an
    ``UNCERT`` HDU holds their spread. A MaNGA hexagon in an input is painted out or kept as
    :attr:`Predictor.hexagon` says.
    """
    out = Path(out)
    suffix = "".join(Path(catalogue).suffixes[-1:]).lower()
    if suffix not in CATALOGUE_FORMATS or Path(catalogue).name != catalogue:
        raise GalsegError(f"--catalogue {catalogue}: a file name ending .ecsv, .csv, .fits or .parquet")
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    paths = expand_inputs(inputs)
    if not paths:
        raise GalsegError("no inputs: give image files, folders or text files listing them")
    # two predicts into one folder would each write a catalogue of their own inputs only
    with only_writer(out, f".predict-rank{rank}.lock", what="galseg predict"):
        return _predict_files(
            predictor,
            paths,
            out,
            rank,
            world,
            catalogue,
            batch_size,
            workers,
            overlay,
            tta,
            measure_arms_too,
            show_progress,
        )


def _predict_files(
    predictor: Predictor,
    paths: list[Path],
    out: Path,
    rank: int,
    world: int,
    catalogue: str,
    batch_size: int,
    workers: int,
    overlay: Callable[..., object] | None,
    tta: bool,
    measure_arms_too: bool,
    show_progress: bool,
) -> Table:
    """:func:`predict_files` once the inputs are known and ``out`` is this process's."""
    suffix = "".join(Path(catalogue).suffixes[-1:]).lower()
    (out / "masks").mkdir(parents=True, exist_ok=True)
    names = [output_name(p) for p in paths]
    stamps = [_input_stamp(p) for p in paths]
    run_id = (
        f"{predictor.run_id}:{'tta' if tta else 'plain'}:{','.join(map(str, predictor.thresholds))}"
        f":{'+'.join(predictor.structures)}:{'measured' if measure_arms_too else 'masks'}"
        f":zoom{','.join(map(str, predictor.zooms))}:cut{predictor.cut}:hexagon-{predictor.hexagon}"
        f":{','.join(STAT_COLUMNS)}"
    )  # the catalogue's columns too: parts written with other columns are redone, never mixed in
    run_id = hashlib.sha256(run_id.encode()).hexdigest()[:16]
    mine = list(range(rank, len(paths), world))
    # inputs an earlier run finished: read back once, their rows come from there
    done_before = {i: _finished(out / "masks" / f"{names[i]}.fits.gz", run_id, stamps[i]) for i in mine}
    written: dict[int, tuple] = {i: back for i, back in done_before.items() if back is not None}
    todo = [i for i in mine if i not in written]
    errors: dict[int, str] = {}
    thresholds = predictor.thresholds
    loader = torch.utils.data.DataLoader(
        _Inputs([paths[i] for i in todo], predictor),
        batch_size=None,
        num_workers=workers,
        collate_fn=lambda item: item,
        prefetch_factor=4 if workers else None,
        worker_init_fn=die_with_parent if workers else None,
    )
    bar = progress(total=len(todo), desc="predict", enabled=show_progress and rank == 0)
    batch: list[dict] = []
    # the work after the network (upsampling, statistics, arms, writing) runs in a pool of
    # `workers` processes while the network takes the next batch; with workers=0, in this process
    context = multiprocessing.get_context("spawn") if torch.cuda.is_initialized() else None  # no CUDA forks
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_post_worker) if workers else None
    pending: set[Future] = set()

    def job(item: dict, p: np.ndarray, spread: np.ndarray | None) -> _Finish:
        index = todo[item["i"]]
        source = item["input"]
        return _Finish(
            index=index,
            source=source,
            footprint=item["footprint"],
            region=item["region"],
            p_small=p,
            spread_small=spread,
            thresholds=thresholds,
            structures=predictor.structures,
            zooms=predictor.zooms,
            target=out / "masks" / f"{names[index]}.fits.gz",
            overlay_path=out / "overlays" / f"{names[index]}.png" if overlay is not None else None,
            overlay=overlay,
            measure=measure_arms_too,
            cut=predictor.cut,
            orientation=item["orientation"],
            provenance={
                "GALSEG": __version__,
                "RUN": printable(str(predictor.run)),
                "RUNID": run_id,
                "NAME": source.name,
                "SOURCE": printable(os.path.abspath(source.source)),
                "INBYTES": stamps[index][0],
                "INMTIME": stamps[index][1],
                "WARNING": source.warning,  # read back by a rerun that finds this file done
            },
        )

    def collect(done: Future | _Finish) -> None:
        index, result, error, fatal = done.result() if isinstance(done, Future) else _finish(done)
        if fatal:
            raise GalsegError(f"{error}; free space and rerun the same command (files written are kept)")
        if error is not None:
            errors[index] = error
        else:
            written[index] = result
        bar.update()

    def flush() -> None:
        if not batch:
            return
        small = np.concatenate([b["small"] for b in batch])  # every zoom of every input
        if tta:
            p_small, spread_small = predictor.tta_probabilities(small, batch_size=batch_size)
        else:
            p_small, spread_small = predictor.probabilities(small, batch_size=batch_size), None
        z = len(predictor.zooms)
        p_small = p_small.reshape(len(batch), z, *p_small.shape[1:])
        spread_small = spread_small.reshape(len(batch), z, *spread_small.shape[1:]) if tta else None
        for j, item in enumerate(batch):
            work = job(item, p_small[j], spread_small[j] if spread_small is not None else None)
            if pool is None:
                collect(work)
                continue
            pending.add(pool.submit(_finish, work))
            while len(pending) > 4 * max(workers, 1):  # bounded memory: wait for the oldest
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for done in finished:
                    pending.discard(done)
                    collect(done)
        batch.clear()

    try:
        for item in loader:
            if item["error"] is not None:
                errors[todo[item["i"]]] = item["error"]
                bar.update()
                continue
            batch.append(item)
            if len(batch) >= batch_size:
                flush()
        flush()
        for done in list(pending):
            collect(done)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    bar.close()

    part, arm_part = _catalogue_rows(
        paths, names, mine, errors, written, out, stat_columns(predictor.structures)
    )
    arms_name = f"arms{suffix}"
    if world > 1:
        parts = out / "parts"
        parts.mkdir(exist_ok=True)
        _write_table(part, parts / f"rank{rank:04d}.ecsv")
        _write_table(arm_part, parts / f"arms_rank{rank:04d}.ecsv")
        dist.barrier()
        if rank != 0:
            return part
        part = vstack([read_catalogue(parts / f"rank{r:04d}.ecsv") for r in range(world)])
        part.sort(["ORDER", "TH"])
        arm_part = vstack([read_catalogue(parts / f"arms_rank{r:04d}.ecsv") for r in range(world)])
        arm_part.sort(["ORDER", "TH", "ARM"])
    # short upper-case keys: they become FITS header cards when the catalogue is FITS
    for table in (part, arm_part):
        table.meta.update(
            {
                "GALSEG": __version__,
                "RUN": printable(str(predictor.run))[-60:],
                "RUNID": run_id,
                "HEAD": predictor.head,
                "THRESHS": ",".join(map(str, thresholds)),
                "TARGET": "+".join(predictor.structures),
                "CUT": predictor.cut,
            }
        )
    _write_table(part, out / catalogue)
    if measure_arms_too and "spiral" in predictor.structures:
        _write_table(arm_part, out / arms_name)
    return part


CATALOGUE_FORMATS = {".ecsv": "ascii.ecsv", ".csv": "ascii.csv", ".fits": "fits", ".parquet": "parquet"}


def read_catalogue(path: str | os.PathLike[str]) -> Table:
    """A prediction catalogue in any of its formats with the documented types: empty text restored
    (CSV masks it) and the flags bool (CSV stores them as the words True and False)."""
    path = Path(path)
    table = Table.read(path, format=CATALOGUE_FORMATS.get(path.suffix.lower()))
    for name in ("ERROR", "WARNING", "OUTPUT", "SOURCE", "NAME", "CHIRALITY"):
        if name in table.colnames and hasattr(table[name], "filled"):  # CSV: empty text is masked
            column = table[name]
            table[name] = np.where(column.mask, "", np.asarray(column.data).astype(str))
    for name in ("HAS_ARMS", "HAS_BAR"):
        if name in table.colnames and table[name].dtype != bool:
            words = np.char.lower(np.asarray(table[name]).astype(str))
            if not np.isin(words, ("true", "false")).all():
                raise GalsegError(f"{path}: column {name} holds values other than True and False")
            table[name] = words == "true"
    return table


def _write_table(table: Table, path: Path) -> None:
    fmt = CATALOGUE_FORMATS[path.suffix.lower()]
    try:
        with atomic_path(path) as tmp:
            table.write(tmp, format=fmt, overwrite=True)
    except ImportError as exc:
        raise GalsegError(
            f"{path}: writing {fmt} needs an extra package ({exc}); use .ecsv, .csv or .fits"
        ) from exc


_UNMEASURED = {
    "TH": 0,
    "HAS_ARMS": False,
    "ARM_PIXELS": 0,
    "ARM_FRACTION_IMAGE": np.nan,
    "ARM_FRACTION_FOOTPRINT": np.nan,
    "MEAN_ARM_PROBABILITY": np.nan,
    "N_ARMS": -1,
    "PITCH_DEG": np.nan,
    "PITCH_ERR_DEG": np.nan,
    "CHIRALITY": "",
    "CHIRALITY_AGREEMENT": np.nan,
    "ARM_COUNT": -1,
    "HAS_BAR": False,
    "BAR_PIXELS": 0,
    **dict.fromkeys(BAR_COLUMNS[2:], np.nan),
}
"""The catalogue values of an input that could not be predicted (one row, TH = 0, with its error)."""


def _plain(value):
    """A numpy scalar as a plain Python value."""
    return value.item() if hasattr(value, "item") else value


def _read_back(
    target: Path,
) -> tuple[str, tuple[int, int], np.ndarray, np.ndarray | None, str, fits.Header]:
    """Name, shape, statistics, arms, warning and primary header of a mask file an earlier run
    wrote, with FITS logical and text columns decoded to bool and str (``Table`` does that; raw
    records would not). The whole file is decompressed first, so gzip's checksum and length
    catch a file cut short or damaged anywhere."""
    data = gzip.decompress(target.read_bytes())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # astropy warns of what it repairs: a file we wrote needs none
        try:
            with fits.open(io.BytesIO(data)) as hdul:
                hdul.verify("exception")
                stats = Table(hdul["STATS"].data).as_array()
                height, width = hdul[1].data.shape  # the first mask
                header = hdul[0].header.copy()
                arms = Table(hdul["ARMS"].data).as_array() if "ARMS" in hdul else None
        except (VerifyError, Warning) as exc:  # neither is a ValueError: the callers' handlers would miss it
            raise ValueError(f"not valid FITS: {one_line(exc)}") from exc
    name, warning = str(header.get("NAME", "")), str(header.get("WARNING", ""))
    return name, (height, width), stats, arms, warning, header


def _catalogue_rows(
    paths: Sequence[Path],
    names: Sequence[str],
    mine: Sequence[int],
    errors: dict[int, str],
    written: dict[int, tuple],
    out: Path,
    stat: tuple[tuple[str, ...], tuple[str, ...]],
) -> tuple[Table, Table]:
    """This rank's rows in input order: each galaxy's statistics (``written``: by this run, or read
    back from the file an earlier run wrote), or its error; and its arms, one row per fitted arm."""
    rows, arm_rows = [], []
    for i in mine:
        target = out / "masks" / f"{names[i]}.fits.gz"
        source = printable(str(paths[i]))
        if i in errors or i not in written or not target.exists():
            rows.append(
                {
                    "ORDER": i,
                    "NAME": names[i],
                    "SOURCE": source,
                    "OUTPUT": "",
                    "HEIGHT": 0,
                    "WIDTH": 0,
                    **{c: _UNMEASURED[c] for c in stat[0]},
                    "WARNING": "",
                    "ERROR": errors.get(i, "not predicted"),
                }
            )
            continue
        name, (height, width), stats, arms, warning = written[i]
        for arm in arms if arms is not None else []:
            arm_rows.append(
                {"ORDER": i, "NAME": name, "SOURCE": source, **{c: _plain(arm[c]) for c in arm.dtype.names}}
            )
        for r in stats:
            rows.append(
                {
                    "ORDER": i,
                    "NAME": name,
                    "SOURCE": source,
                    "OUTPUT": str(target.relative_to(out)),
                    "HEIGHT": height,
                    "WIDTH": width,
                    **{c: _plain(r[c]) for c in stat[0]},
                    "WARNING": warning,
                    "ERROR": "",
                }
            )
    arms = Table(rows=arm_rows) if arm_rows else Table(names=ARM_COLUMNS, dtype=ARM_DTYPES)
    columns = ("ORDER", "NAME", "SOURCE", "OUTPUT", "HEIGHT", "WIDTH", *stat[0], "WARNING", "ERROR")
    if not rows:
        return Table(
            names=columns,
            dtype=("i8", "U64", "U256", "U128", "i4", "i4", *stat[1], "U64", "U256"),
        ), arms
    return Table(rows=rows, names=columns), arms
