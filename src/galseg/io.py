"""Files in and out, safely: every stage writes through here and reads untrusted files through here.

Writing: a result appears under its final name only when it is whole (written to a temporary
sibling, flushed, then renamed), so an interrupted job never leaves a half file that looks done.

Reading: inputs are bounded before they are decoded. A file larger than :data:`MAX_FILE_BYTES`,
a gzip stream that inflates past :data:`MAX_INFLATED_BYTES`, or an image of more than
:data:`MAX_IMAGE_PIXELS` pixels is refused with a one-line :class:`GalsegError` naming the
file, before any large allocation; FITS headers are walked from their bytes
(:func:`check_fits_layout`) before astropy believes what they say. With these limits one input
costs at most about 2.7 GB in ``predict`` (measured with the ready model on a 4096 x 4096 PNG:
its twelve probability planes, masks, arms and bar).
"""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import sys
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from galseg import GalsegError

MAX_FILE_BYTES = 256 * 2**20
"""Largest input file read (a GZ:3D file is about 1 MB gzipped, 10 MB inflated)."""
MAX_INFLATED_BYTES = 256 * 2**20
"""Largest size a gzip-compressed input may inflate to: a decompression bomb stops here."""
MAX_IMAGE_PIXELS = 4096 * 4096
"""Largest image (rows x columns) read; survey cutouts are hundreds of pixels on a side."""


# ----------------------------------------------------------------------------- writing


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; rename it to ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that no reader ever sees a half-written file."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)  # no fsync: renaming guards against kills; fsync per file cost seconds per 1,000


def atomic_write_json(path: str | os.PathLike[str], value: object) -> None:
    """``value`` as indented JSON, written atomically."""
    atomic_write_bytes(path, (json.dumps(value, indent=1) + "\n").encode())


@contextmanager
def only_writer(folder: Path, name: str, *, what: str) -> Iterator[None]:
    """Hold ``folder/name`` locked while a command writes into ``folder``: a second command that
    would write there at the same time is refused in one line instead of mixing its results in.
    The kernel drops the lock when the holder exits, however it exits, so a killed run never
    leaves the folder locked."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / name, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise GalsegError(
                f"{folder}: another {what} is writing here now; wait for it to finish or choose another --out"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def writable_folder(path: str | os.PathLike[str], *, option: str = "--out") -> Path:
    """Create ``path`` if needed and check that galseg can write there; one-line error if not."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise GalsegError(f"{option} {path}: is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GalsegError(f"{option} {path}: cannot create the folder ({exc.strerror})") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise GalsegError(f"{option} {path}: the folder is not writable")
    return path


def progress(iterable=None, *, total: int | None = None, desc: str = "", enabled: bool = True) -> tqdm:
    """A tqdm bar on stderr: live on a terminal; in a log file a line at most every 10 s.
    Nothing is shown for work over within 2 s."""
    live = sys.stderr.isatty()
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        disable=not enabled,
        mininterval=0.5 if live else 10,
        delay=2,
        ascii=not live,
        dynamic_ncols=live,
    )


def die_with_parent(*_: object) -> None:
    """Ask Linux to kill this worker process when its parent dies (pool and DataLoader workers),
    so a killed run leaves no orphans holding memory."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


# ----------------------------------------------------------------------------- reading


def read_bytes(path: str | os.PathLike[str], *, inflate: bool = True) -> bytes:
    """The bytes of ``path``, gunzipped when they are gzip, within the byte budgets."""
    path = Path(path)
    if not path.is_file():
        raise GalsegError(f"{path}: no such file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise GalsegError(
            f"{path}: {size / 2**20:.0f} MB is over galseg's {MAX_FILE_BYTES >> 20} MB input limit"
        )
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise GalsegError(f"{path}: cannot read ({exc.strerror})") from exc
    if inflate and raw[:2] == b"\x1f\x8b":
        raw = gunzip(raw, name=str(path))
    return raw


FITS_BLOCK = 2880
MAX_HEADER_CARDS = 10_000
"""Most header cards in one HDU (SDSS, DECaLS and MaNGA headers hold a few hundred)."""
MAX_HDUS = 1_000
"""Most HDUs in one input file (a GZ:3D file has eleven)."""


def check_fits_layout(raw: bytes, *, name: str) -> int:
    """Walk the HDUs of FITS bytes from their headers alone and refuse, before anything is
    decoded, a file whose headers are longer than :data:`MAX_HEADER_CARDS` cards, that holds
    more than :data:`MAX_HDUS` HDUs, whose data is longer than the bytes there (a table that
    says it has 10^9 rows), or whose compressed image would inflate past
    :data:`MAX_INFLATED_BYTES`. Returns the number of HDUs (0 for bytes that are not FITS,
    left to the reader to refuse)."""
    if not raw.startswith(b"SIMPLE  ="):
        return 0
    offset, count = 0, 0
    while offset < len(raw) and (count == 0 or raw.startswith(b"XTENSION", offset)):
        if count >= MAX_HDUS:
            raise GalsegError(f"{name}: more than {MAX_HDUS:,} HDUs (galseg's limit)")
        cards, offset = _header_numbers(raw, offset, name=f"{name}: HDU {count}")
        size = _data_bytes(cards)
        if offset + size > len(raw):
            raise GalsegError(
                f"{name}: HDU {count} says its data is {size:,} bytes, but only "
                f"{len(raw) - offset:,} follow its header (cut short or lying)"
            )
        if cards.get("ZIMAGE") == "T":
            axes = [cards.get(f"ZNAXIS{i}", 0) for i in range(1, cards.get("ZNAXIS", 0) + 1)]
            inflated = int(np.prod(axes, dtype=object)) * abs(cards.get("ZBITPIX", 8)) // 8
            if inflated > MAX_INFLATED_BYTES:
                raise GalsegError(
                    f"{name}: HDU {count} is a compressed image of {' x '.join(map(str, axes))} "
                    f"values: over galseg's {MAX_INFLATED_BYTES >> 20} MB limit"
                )
        offset += -(-size // FITS_BLOCK) * FITS_BLOCK
        count += 1
    return count


_LAYOUT_KEYS = ("BITPIX", "NAXIS", "PCOUNT", "GCOUNT", "ZIMAGE", "ZBITPIX", "ZNAXIS")


def _header_numbers(raw: bytes, offset: int, *, name: str) -> tuple[dict, int]:
    """The layout cards of the header at ``offset`` (see :func:`check_fits_layout`) and the offset
    of its data."""
    cards: dict = {}
    for n in range(MAX_HEADER_CARDS + 1):
        card = raw[offset + 80 * n : offset + 80 * (n + 1)]
        if len(card) < 80:
            raise GalsegError(f"{name}: the header is cut short (no END card)")
        key = card[:8].rstrip().decode("ascii", "replace")
        if key == "END":
            return cards, offset + -(-(80 * (n + 1)) // FITS_BLOCK) * FITS_BLOCK
        if key.rstrip("0123456789") in _LAYOUT_KEYS and card[8:10] == b"= ":
            value = card[10:].split(b"/")[0].strip().decode("ascii", "replace")
            if key == "ZIMAGE":
                cards[key] = value
                continue
            try:
                cards[key] = int(value)
            except ValueError:
                raise GalsegError(f"{name}: {key} = {value!r} is not a whole number") from None
            if cards[key] < 0 and key not in ("BITPIX", "ZBITPIX"):
                raise GalsegError(f"{name}: {key} = {value} is negative")
    raise GalsegError(f"{name}: a header of more than {MAX_HEADER_CARDS:,} cards (galseg's limit)")


def _data_bytes(cards: dict) -> int:
    """Bytes of an HDU's data (before padding), as its header says: the FITS standard's
    |BITPIX| / 8 x GCOUNT x (PCOUNT + NAXIS1 x ... x NAXISn)."""
    n = cards.get("NAXIS", 0)
    if n == 0:
        return 0
    values = int(np.prod([cards.get(f"NAXIS{i}", 0) for i in range(1, n + 1)], dtype=object))
    return abs(cards.get("BITPIX", 8)) // 8 * cards.get("GCOUNT", 1) * (cards.get("PCOUNT", 0) + values)


def gunzip(raw: bytes, *, name: str, limit: int | None = None) -> bytes:
    """Inflate gzip ``raw`` (one or more members), refusing output beyond ``limit`` bytes
    (default :data:`MAX_INFLATED_BYTES`)."""
    limit = MAX_INFLATED_BYTES if limit is None else limit
    out = bytearray()
    data = raw
    try:
        while data:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out += inflater.decompress(data, limit + 1 - len(out))
            if len(out) > limit:
                raise GalsegError(f"{name}: inflates to over {limit >> 20} MB (galseg's limit); not a cutout")
            if not inflater.eof:
                raise GalsegError(f"{name}: truncated gzip data")
            data = inflater.unused_data.lstrip(b"\0")
    except zlib.error as exc:
        raise GalsegError(f"{name}: corrupt gzip data ({exc})") from exc
    return bytes(out)


def check_pixels(shape: tuple[int, ...], *, name: str) -> None:
    """Refuse an image whose rows x columns exceed :data:`MAX_IMAGE_PIXELS` or are empty."""
    rows, columns = int(shape[0]), int(shape[1])
    if rows * columns > MAX_IMAGE_PIXELS:
        raise GalsegError(
            f"{name}: {columns} x {rows} pixels is over galseg's limit of {MAX_IMAGE_PIXELS:,} pixels; "
            "cut the galaxy out first"
        )
    if rows < 1 or columns < 1:
        raise GalsegError(f"{name}: the image is empty ({columns} x {rows} pixels)")


def stretch_to_uint8(data: np.ndarray) -> np.ndarray:
    """Scale a float image (one or more bands) to 0..255: asinh between the sky and the 99.9th
    percentile, as survey colour cutouts are made."""
    data = np.nan_to_num(np.asarray(data, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    sky = np.median(data)
    noise = 1.4826 * np.median(np.abs(data - sky)) or 1.0
    top = max(np.percentile(data, 99.9) - sky, 10 * noise)
    x = np.clip((data - sky) / noise, 0, None)
    return np.clip(255 * np.arcsinh(x) / np.arcsinh(top / noise), 0, 255).astype(np.uint8)


def read_picture(path: Path) -> np.ndarray:
    """A PNG or JPEG as (H, W, 3) uint8; the size is checked from the header before decoding."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as picture:
                check_pixels((picture.height, picture.width), name=str(path))
                if picture.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit or float grey
                    return stretch_to_uint8(np.repeat(np.asarray(picture)[..., None], 3, axis=2))
                return np.asarray(picture.convert("RGB"), dtype=np.uint8)
    except Image.DecompressionBombError as exc:  # Pillow's own refusal, before ours, for the largest
        raise GalsegError(
            f"{path}: the image is over galseg's limit of {MAX_IMAGE_PIXELS:,} pixels ({one_line(exc)})"
        ) from exc
    except (OSError, ValueError, SyntaxError, UnidentifiedImageError) as exc:
        raise GalsegError(f"{path}: not a readable image ({one_line(exc)})") from exc


def one_line(exc: BaseException) -> str:
    """An exception as one short line, for error messages that name a file."""
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def plain_value(value):
    """A numpy scalar as a plain Python value (JSON records and table rows take those); anything
    else as it is."""
    return value.item() if hasattr(value, "item") else value


MAX_JSON_BYTES = 64 * 2**20
"""Largest JSON record galseg reads (a run record or manifest is kilobytes; a dataset manifest
lists skipped files, so allow room)."""


def read_json(path: str | os.PathLike[str], *, what: str) -> dict:
    """A JSON object from ``path``, or a one-line error naming the file and ``what`` it should be."""
    path = Path(path)
    if not path.is_file():
        raise GalsegError(f"{path}: missing; it should be {what}")
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise GalsegError(f"{path}: {path.stat().st_size} bytes is too large for {what}")
        value = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError as exc:  # a hostile file nested thousands deep
        raise GalsegError(f"{path}: not {what} (nested too deeply)") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GalsegError(f"{path}: not readable as {what} ({type(exc).__name__})") from exc
    if not isinstance(value, dict):
        raise GalsegError(f"{path}: not {what} (a JSON object was expected)")
    return value


def read_npy_header(path: str | os.PathLike[str]) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a ``.npy`` file from its header, checking that the data is all there."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read(fh)
            offset = fh.tell()
    except (OSError, ValueError, EOFError) as exc:
        raise GalsegError(f"{path}: not a readable .npy array ({type(exc).__name__})") from exc
    expected = offset + int(np.prod(shape)) * dtype.itemsize
    if path.stat().st_size != expected:
        raise GalsegError(f"{path}: truncated or padded ({path.stat().st_size} bytes, expected {expected})")
    return tuple(shape), dtype


def gzip_bytes(data: bytes, *, compresslevel: int = 1) -> bytes:
    """gzip with a fixed timestamp, so the same content always gives the same bytes."""
    return gzip.compress(data, compresslevel=compresslevel, mtime=0)
