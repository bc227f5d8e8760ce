"""Reading what a user points galseg at: image files (FITS, PNG, JPEG, GZ:3D) and lists of them.

Each input becomes an :class:`InputImage`: the pixels, the WCS where the file has one, and what a
GZ:3D file adds (the volunteers' centre and star clicks, the IFU size). A file that cannot be read
is a :class:`galseg.GalsegError` naming it, so a survey run records it and goes on.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from galseg import GalsegError
from galseg.gz3d import ifu_design_size, read_gz3d, volunteer_hints
from galseg.io import check_fits_layout, check_pixels, one_line, read_bytes, read_picture, stretch_to_uint8

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
