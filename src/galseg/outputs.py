"""What ``galseg predict`` writes: each galaxy's mask file as FITS bytes and the catalogue.

The columns, their types and the HDU names are defined here once (docs/outputs.md describes
them for users); mask files are serialised directly, without astropy's header copies, and read
back whole so a damaged file is redone rather than trusted.
"""

from __future__ import annotations

import gzip
import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyError
from astropy.table import Table
from astropy.wcs import WCS

from galseg import GalsegError
from galseg.arms import Arm, ArmSummary, DiscGeometry
from galseg.gz3d import bintable_bytes, image_bytes, wcs_header
from galseg.inference import CUT
from galseg.inputs import printable
from galseg.io import atomic_path, one_line, plain_value

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


def write_table(table: Table, path: Path) -> None:
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


def read_mask_file(
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


def catalogue_rows(
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
                {
                    "ORDER": i,
                    "NAME": name,
                    "SOURCE": source,
                    **{c: plain_value(arm[c]) for c in arm.dtype.names},
                }
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
                    **{c: plain_value(r[c]) for c in stat[0]},
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
