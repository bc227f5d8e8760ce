"""Prepared datasets: GZ:3D files resized once into memory-mapped arrays, a catalogue and a split.

Layout of a dataset folder::

    images.npy     (N, S, S, 3) uint8   RGB, area-averaged to S x S
    spiral.npy     (N, S, S)    uint8   spiral-arm vote counts, resampled, 0..15
    bar.npy        (N, S, S)    uint8   bar vote counts, likewise
    catalogue.ecsv one row per galaxy: identity, source file, arm and bar fractions, split
    manifest.json  settings, counts, skipped files and why; written last, so its presence
                   means the dataset is complete

Preparation works in chunks written atomically under ``parts/``; an interrupted run resumes
from the last finished chunk and ends with the same bytes as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from astropy.table import Table

from galseg import HEXAGON_MODES, THRESHOLDS, GalsegError, __version__
from galseg.gz3d import (
    find_gz3d_files,
    ifu_design_size,
    paint_out_hexagon,
    read_gz3d,
    votes_from_paths,
)
from galseg.io import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    die_with_parent,
    progress,
    read_json,
    read_npy_header,
)

MAX_VOTES = 15
"""Vote maps are clipped here when prepared (the issue's 0..15); every threshold is far below."""
CHUNK = 256
MANIFEST = "manifest.json"


# ----------------------------------------------------------------------------- resizing


def area_average(values: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    """Exact area averaging of ``values`` to ``n_out`` pixels along ``axis``, in O(N).

    The mean over an output pixel [e0, e1) is (C(e1) - C(e0)) / (e1 - e0), where C(e) is the
    cumulative sum of the input up to the (fractional) position e: the same numbers as a matrix of
    overlap weights, without its mostly-zero n_out x n_in product.
    """
    values = np.moveaxis(np.asarray(values, dtype=np.float64), axis, 0)
    n_in = values.shape[0]
    cumulative = np.concatenate([np.zeros((1, *values.shape[1:])), np.cumsum(values, axis=0)])
    edges = np.arange(n_out + 1) * (n_in / n_out)
    whole = np.minimum(np.floor(edges).astype(np.int64), n_in - 1)
    frac = (edges - whole).reshape(-1, *([1] * (values.ndim - 1)))
    at_edges = cumulative[whole] + frac * values[whole]
    out = (at_edges[1:] - at_edges[:-1]) / (n_in / n_out)
    return np.moveaxis(out, 0, axis)


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Area-average an (H, W, 3) uint8 image to (size, size, 3) uint8."""
    out = area_average(area_average(image, size, 0), size, 1)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def resize_votes(votes: np.ndarray, size: int) -> np.ndarray:
    """Resample a vote-count map to (size, size) whole counts in 0..15.

    Each output pixel is the area-weighted mean count of the input pixels it covers, rounded to
    the nearest whole count (halves to even) and clipped at 15: it reaches th votes when the mean
    count over its area is th - 0.5 or more, so a pixel half covered by th votes and half by none
    drops below th. No threshold mask needs counts above 15.
    """
    out = area_average(area_average(votes, size, 0), size, 1)
    return np.clip(np.rint(out), 0, MAX_VOTES).astype(np.uint8)


def arm_fractions(votes: np.ndarray) -> np.ndarray:
    """Fraction of pixels with votes >= th for th = 1..6, shape (6,) (or (N, 6) for a stack)."""
    thresholds = np.asarray(THRESHOLDS)
    flat = votes.reshape(*votes.shape[:-2], -1)
    return (flat[..., None, :] >= thresholds[:, None]).mean(axis=-1)


# ----------------------------------------------------------------------------- the split

SPLITS = ("train", "val", "test")
"""Training galaxies; validation galaxies (carved from the training share) that choose the epoch;
test galaxies, touched only by ``galseg evaluate``."""


def split_unit(mangaid: str, seed: int, purpose: str) -> float:
    """A number in [0, 1) that depends only on the galaxy, the seed and the purpose of the draw."""
    digest = hashlib.sha256(f"{seed}:{purpose}:{mangaid}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _lowest(units: np.ndarray, share: float) -> np.ndarray:
    """Boolean mask of the round(share * n) entries with the lowest units (ties by position)."""
    chosen = np.zeros(len(units), dtype=bool)
    chosen[np.argsort(units, kind="stable")[: int(np.floor(share * len(units) + 0.5))]] = True
    return chosen


def assign_split(
    mangaids: Sequence[str],
    has_arms: Sequence[bool],
    *,
    seed: int,
    test_fraction: float,
    validation_fraction: float = 0.1,
) -> np.ndarray:
    """'train', 'val' or 'test' for each galaxy, exactly stratified by whether it has arm votes.

    Within each stratum the galaxies are ranked by a hash of (seed, MANGAID): the lowest
    round(test_fraction * n) are test, so each stratum's test share is test_fraction to the
    nearest galaxy. Of the rest, ranked by a second hash, the lowest round(validation_fraction
    * n_rest) are validation. A galaxy's hash never changes, so adding k galaxies to a stratum
    moves only old galaxies whose hash lies between the old and the new cut: about
    sqrt(k * f * (1 - f)) of them on average, never more than k.
    """
    for name, value in (("--test-fraction", test_fraction), ("--validation-fraction", validation_fraction)):
        if not 0 < value < 1:
            raise GalsegError(f"{name} must be between 0 and 1, got {value}")
    mangaids = np.asarray(mangaids, dtype=str)
    has_arms = np.asarray(has_arms, dtype=bool)
    split = np.full(len(mangaids), "train", dtype="U5")
    for stratum in (has_arms, ~has_arms):
        rows = np.nonzero(stratum)[0]
        test = _lowest(np.array([split_unit(m, seed, "test") for m in mangaids[rows]]), test_fraction)
        split[rows[test]] = "test"
        rest = rows[~test]
        val = _lowest(np.array([split_unit(m, seed, "val") for m in mangaids[rest]]), validation_fraction)
        split[rest[val]] = "val"
    return split


# ----------------------------------------------------------------------------- preparing


@dataclass(frozen=True)
class _Prepared:
    source: str
    error: str | None = None
    mangaid: str = ""
    ra: float = 0.0
    dec: float = 0.0
    n_classifications: int = 0
    max_votes: int = 0
    bar_max_votes: int = 0
    outline_mismatch_px: int = 0
    image: np.ndarray | None = None
    spiral: np.ndarray | None = None
    bar: np.ndarray | None = None


def _prepare_one(args: tuple[Path, Path, int, str]) -> _Prepared:
    path, root, size, hexagon = args
    source = str(path.relative_to(root))
    try:
        galaxy = read_gz3d(path)
    except GalsegError as exc:
        return _Prepared(source, error=str(exc).removeprefix(f"{path}: "))
    meta = galaxy.metadata
    # HDU 3 should be the outlines of HDU 9 rasterised; the panel reference relies on it, so the
    # difference is measured here rather than assumed to be zero
    paths = galaxy.spiral_paths["spiral_paths"]
    drawn = galaxy.spiral_votes.max() > 0 or any(len(text.strip()) > 2 for text in paths)
    redrawn = votes_from_paths(paths, galaxy.spiral_votes.shape) if drawn else galaxy.spiral_votes
    return _Prepared(
        source=source,
        mangaid=galaxy.mangaid,
        ra=float(meta["ra"][0]),
        dec=float(meta["dec"][0]),
        n_classifications=galaxy.n_classifications,
        max_votes=int(galaxy.spiral_votes.max()),
        bar_max_votes=int(galaxy.bar_votes.max()),
        outline_mismatch_px=int(np.count_nonzero(redrawn != galaxy.spiral_votes)),
        image=resize_image(
            galaxy.image if hexagon == "keep" else paint_out_hexagon(galaxy.image, ifu_design_size(meta)),
            size,
        ),
        spiral=resize_votes(galaxy.spiral_votes, size),
        bar=resize_votes(galaxy.bar_votes, size),
    )


def _save_chunk(path: Path, results: list[_Prepared], size: int) -> None:
    good = [r for r in results if r.error is None]
    records = [
        {
            "source": r.source,
            "error": r.error,
            "mangaid": r.mangaid,
            "ra": r.ra,
            "dec": r.dec,
            "n_classifications": r.n_classifications,
            "max_votes": r.max_votes,
            "bar_max_votes": r.bar_max_votes,
            "outline_mismatch_px": r.outline_mismatch_px,
        }
        for r in results
    ]
    arrays = {
        "images": np.stack([r.image for r in good]) if good else np.zeros((0, size, size, 3), np.uint8),
        "spiral": np.stack([r.spiral for r in good]) if good else np.zeros((0, size, size), np.uint8),
        "bar": np.stack([r.bar for r in good]) if good else np.zeros((0, size, size), np.uint8),
        "records": np.frombuffer(json.dumps(records).encode(), dtype=np.uint8),
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def prepare(
    gz3d_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    size: int = 128,
    test_fraction: float = 0.25,
    validation_fraction: float = 0.1,
    seed: int = 0,
    workers: int = 1,
    show_progress: bool = True,
    hexagon: str = "paint",
) -> dict:
    """Prepare every GZ:3D file under ``gz3d_dir`` into a dataset folder ``out``.

    ``hexagon``: :data:`HEXAGON_MODES` (the IFU hexagon painted out of each image, or kept).

    Bad files are skipped and listed in the manifest with the reason. Returns the manifest.
    Memory stays flat: one chunk of resized galaxies at a time, however many files.
    The manifest is the commit mark: it is removed first when ``out`` is prepared again and
    written last, so a folder without it is never trusted (``open_dataset`` refuses it).
    """
    if size < 16 or size % 16:
        raise GalsegError(f"--size {size}: use a multiple of 16 (the U-Net halves it 4 times)")
    if hexagon not in HEXAGON_MODES:
        raise GalsegError(f"--hexagon {hexagon!r}: choose {' or '.join(HEXAGON_MODES)}")
    assign_split([], [], seed=seed, test_fraction=test_fraction, validation_fraction=validation_fraction)
    root = Path(gz3d_dir)
    files = find_gz3d_files(root)
    if not files:
        raise GalsegError(f"{root}: no .fits or .fits.gz files found")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise GalsegError(f"--out {out}: is a file, not a folder")
    (out / MANIFEST).unlink(missing_ok=True)  # from here on the folder is not a finished dataset
    parts = out / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    settings = {
        "size": size,
        "seed": seed,
        "test_fraction": test_fraction,
        "validation_fraction": validation_fraction,
        "hexagon": hexagon,
        "files": [str(p.relative_to(root)) for p in files],
    }
    settings_file = parts / "settings.json"
    if settings_file.exists() and settings_file.read_bytes() != json.dumps(settings).encode():
        raise GalsegError(
            f"{out}: holds an unfinished dataset made with other settings or files; "
            "remove the folder or use another --out"
        )
    atomic_write_bytes(settings_file, json.dumps(settings).encode())

    chunks = [files[i : i + CHUNK] for i in range(0, len(files), CHUNK)]
    pool = ProcessPoolExecutor(workers, initializer=die_with_parent) if workers > 1 else None
    try:
        ticks = progress(total=len(files), desc="prepare", enabled=show_progress)
        for number, chunk in enumerate(chunks):
            target = parts / f"chunk_{number:06d}.npz"
            if target.exists():  # finished before an interruption
                ticks.update(len(chunk))
                continue
            jobs = [(p, root, size, hexagon) for p in chunk]
            results = []
            for result in pool.map(_prepare_one, jobs, chunksize=4) if pool else map(_prepare_one, jobs):
                results.append(result)
                ticks.update()
            _save_chunk(target, results, size)
        ticks.close()
    finally:
        if pool:
            pool.shutdown()
    manifest = _assemble(
        out,
        parts,
        len(chunks),
        size=size,
        seed=seed,
        test_fraction=test_fraction,
        validation_fraction=validation_fraction,
        hexagon=hexagon,
        source_dir=str(root.resolve()),
    )
    shutil.rmtree(parts)
    return manifest


def _assemble(
    out: Path,
    parts: Path,
    n_chunks: int,
    *,
    size: int,
    seed: int,
    test_fraction: float,
    validation_fraction: float,
    hexagon: str,
    source_dir: str,
) -> dict:
    """Concatenate the chunks into the final arrays, catalogue and manifest, one chunk at a time."""
    per_chunk: list[list[dict]] = []
    for number in range(n_chunks):
        with np.load(parts / f"chunk_{number:06d}.npz") as chunk:
            records = json.loads(chunk["records"].tobytes())
        saved = 0
        for r in records:  # where each readable galaxy sits in its chunk's arrays
            r["row"] = saved if r["error"] is None else -1
            saved += r["error"] is None
        per_chunk.append(records)
    records = [r for chunk in per_chunk for r in chunk]
    seen: dict[str, str] = {}
    for r in records:  # a galaxy must appear once, or it could sit in both splits
        if r["error"] is None and r["mangaid"] in seen:
            r["error"] = f"duplicate MANGAID {r['mangaid']} (also in {seen[r['mangaid']]})"
        elif r["error"] is None:
            seen[r["mangaid"]] = r["source"]
    good = [r for r in records if r["error"] is None]
    if not good:
        first = records[0]
        raise GalsegError(
            f"{source_dir}: none of its {len(records)} GZ:3D file(s) could be prepared "
            f"(first: {first['source']}: {first['error']})"
        )
    n = len(good)
    shapes = {"images": (n, size, size, 3), "spiral": (n, size, size), "bar": (n, size, size)}
    # written sequentially (header, then each chunk's bytes), not through a memory map, whose
    # dirty pages would count in RSS: memory stays one chunk whatever the dataset's size
    files = {name: open(out / f".{name}.npy.part", "wb") for name in shapes}
    fractions: dict[str, list[np.ndarray]] = {"spiral": [], "bar": []}
    try:
        for name, shape in shapes.items():
            np.lib.format.write_array_header_1_0(
                files[name], {"descr": "|u1", "fortran_order": False, "shape": shape}
            )
        for number, chunk_records in enumerate(per_chunk):
            keep = [r["row"] for r in chunk_records if r["error"] is None]
            with np.load(parts / f"chunk_{number:06d}.npz") as chunk:
                for name, fh in files.items():
                    data = np.ascontiguousarray(chunk[name][keep])
                    fh.write(data.tobytes())
                    if name in ("spiral", "bar"):
                        fractions[name].append(arm_fractions(data))
    finally:
        for fh in files.values():
            fh.close()
    for name in shapes:
        os.replace(out / f".{name}.npy.part", out / f"{name}.npy")
    empty = np.zeros((0, len(THRESHOLDS)))
    arms, bars = (np.concatenate([empty, *fractions[n]]).astype(np.float32) for n in ("spiral", "bar"))

    mangaids = [r["mangaid"] for r in good]
    has_arms = arms[:, 0] > 0
    split = assign_split(
        mangaids, has_arms, seed=seed, test_fraction=test_fraction, validation_fraction=validation_fraction
    )
    catalogue = Table(
        {
            "INDEX": np.arange(n, dtype=np.int64),
            "MANGAID": np.array(mangaids, dtype="U11"),
            "RA": np.array([r["ra"] for r in good], dtype=np.float64),
            "DEC": np.array([r["dec"] for r in good], dtype=np.float64),
            "N_CLASSIFICATIONS": np.array([r["n_classifications"] for r in good], dtype=np.int16),
            "MAX_VOTES": np.array([r["max_votes"] for r in good], dtype=np.int16),  # full resolution
            "BAR_MAX_VOTES": np.array([r.get("bar_max_votes", 0) for r in good], dtype=np.int16),
            "OUTLINE_MISMATCH_PX": np.array([r["outline_mismatch_px"] for r in good], dtype=np.int64),
            "SOURCE_FILE": np.array([r["source"] for r in good], dtype=str),
            **{f"ARM_FRACTION_TH{th}": arms[:, k] for k, th in enumerate(THRESHOLDS)},
            **{f"BAR_FRACTION_TH{th}": bars[:, k] for k, th in enumerate(THRESHOLDS)},
            "SPLIT": split.astype("U5"),
        }
    )
    catalogue.meta.update({"galseg_version": __version__, "size_px": size, "seed": seed})
    with atomic_path(out / "catalogue.ecsv") as tmp:
        catalogue.write(tmp, format="ascii.ecsv", overwrite=True)
    mismatch = np.asarray(catalogue["OUTLINE_MISMATCH_PX"])
    manifest = {
        "galseg_version": __version__,
        "size": size,
        "seed": seed,
        "test_fraction": test_fraction,
        "validation_fraction": validation_fraction,
        "hexagon": hexagon,
        "source_dir": source_dir,
        "counts": {
            "files": len(records),
            "prepared": n,
            "skipped": len(records) - n,
            **{name: int((split == name).sum()) for name in SPLITS},
            **{f"with_arms_{name}": int((has_arms & (split == name)).sum()) for name in SPLITS},
        },
        # HDU 3 against the outlines of HDU 9 re-rasterised at full resolution (pixels differing)
        "outline_check": {
            "galaxies_differing": int((mismatch > 0).sum()),
            "max_pixels_differing": int(mismatch.max()) if n else 0,
            "mean_pixels_differing": float(mismatch.mean()) if n else 0.0,
        },
        "skipped": [{"file": r["source"], "reason": r["error"]} for r in records if r["error"]],
    }
    atomic_write_json(out / MANIFEST, manifest)
    return manifest


# ----------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class PreparedDataset:
    """A prepared dataset folder, opened read-only by memory map."""

    folder: Path
    manifest: dict
    catalogue: Table

    @property
    def size(self) -> int:
        return int(self.manifest["size"])

    def array(self, name: str) -> np.ndarray:
        """``images``, ``spiral`` or ``bar`` as a read-only memory map."""
        return np.load(self.folder / f"{name}.npy", mmap_mode="r")

    def indices(self, split: str | None) -> np.ndarray:
        """Rows of the given split ('train', 'test') or of all galaxies (None)."""
        if split is None:
            return np.asarray(self.catalogue["INDEX"])
        return np.asarray(self.catalogue["INDEX"][self.catalogue["SPLIT"] == split])


def open_dataset(folder: str | os.PathLike[str]) -> PreparedDataset:
    """Open a prepared dataset, with a clear error when it is missing or unfinished."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        hint = " (unfinished: rerun galseg prepare to complete it)" if (folder / "parts").exists() else ""
        raise GalsegError(f"{folder}: not a prepared galseg dataset, {MANIFEST} is missing{hint}")
    manifest = read_json(manifest_path, what="a galseg dataset manifest")
    try:
        size, n = int(manifest["size"]), int(manifest["counts"]["prepared"])
    except (KeyError, TypeError, ValueError) as exc:
        raise GalsegError(f"{manifest_path}: incomplete manifest ({type(exc).__name__}: {exc})") from exc
    path = folder / "catalogue.ecsv"
    if not path.is_file():
        raise GalsegError(f"{path}: missing; rerun galseg prepare")
    try:
        catalogue = Table.read(path, format="ascii.ecsv")
    except Exception as exc:  # noqa: BLE001 - any parser failure means a damaged file
        problem = type(exc).__name__
        raise GalsegError(f"{path}: not a readable catalogue ({problem}); rerun galseg prepare") from exc
    missing = {"INDEX", "MANGAID", "SPLIT", "SOURCE_FILE"} - set(catalogue.colnames)
    if missing or len(catalogue) != n:
        raise GalsegError(
            f"{path}: does not match {MANIFEST} ({len(catalogue)} rows for {n} galaxies"
            f"{', lacks ' + ', '.join(sorted(missing)) if missing else ''}); rerun galseg prepare"
        )
    expected = {"images": (n, size, size, 3), "spiral": (n, size, size), "bar": (n, size, size)}
    for name, shape in expected.items():
        array = folder / f"{name}.npy"
        if not array.is_file():
            raise GalsegError(f"{array}: missing; rerun galseg prepare")
        found, dtype = read_npy_header(array)
        if found != shape or dtype != np.uint8:
            raise GalsegError(
                f"{array}: holds {found} {dtype}, the manifest says {shape} uint8; rerun galseg prepare"
            )
    return PreparedDataset(folder, manifest, catalogue)


# The eight symmetries of the square: galaxies have no preferred orientation.
DIHEDRAL = tuple((k, flip) for flip in (False, True) for k in range(4))


def dihedral(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    """Rotate the last two axes by k quarter turns, after a left-right flip if ``flip``."""
    if flip:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, k, dims=(-2, -1)) if k else x


def undo_dihedral(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    """The inverse of :func:`dihedral`: turn back, then flip back."""
    x = torch.rot90(x, -k, dims=(-2, -1)) if k else x
    return torch.flip(x, dims=(-1,)) if flip else x


def _gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """(C, H, W) blurred by a separable Gaussian of ``sigma`` pixels (edges reflected)."""
    radius = max(1, int(3 * sigma + 0.5))
    x = torch.arange(-radius, radius + 1, dtype=image.dtype)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = image.shape[0]
    out = F.pad(image[None], (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    out = F.conv2d(out, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return out[0]


def _rescale(image: torch.Tensor, votes: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Zoom about the centre by ``scale`` keeping the size: out (< 1) pads with sky like the
    border's, in (> 1) crops; votes ((S, S), or one plane per structure) follow by nearest
    neighbour, so counts stay whole."""
    size = image.shape[-1]
    inner = max(8, int(round(size * scale)))
    if inner == size:
        return image, votes
    image = F.interpolate(
        image[None], size=(inner, inner), mode="bilinear", antialias=True, align_corners=False
    )[0]
    planes = votes.reshape(1, -1, size, size).float()
    planes = F.interpolate(planes, size=(inner, inner), mode="nearest")[0].long()
    votes = planes.reshape(*votes.shape[:-2], inner, inner)
    if inner > size:
        lo = (inner - size) // 2
        return image[:, lo : lo + size, lo : lo + size], votes[..., lo : lo + size, lo : lo + size]
    # the new border is sky: the old border's level and noise, never a copy of the galaxy
    frame = torch.cat([image[:, :2].flatten(1), image[:, -2:].flatten(1), image[:, :, :2].flatten(1)], dim=1)
    sky, noise = frame.median(dim=1).values, frame.std(dim=1)
    canvas = sky.view(-1, 1, 1) + noise.view(-1, 1, 1) * torch.randn(image.shape[0], size, size)
    lo = (size - inner) // 2
    canvas[:, lo : lo + inner, lo : lo + inner] = image
    padded = torch.zeros(*votes.shape[:-2], size, size, dtype=votes.dtype)
    padded[..., lo : lo + inner, lo : lo + inner] = votes
    return canvas, padded


NOISE = 0.08
"""Largest sky noise added by :func:`augment_photometry` (standard deviation, as a share of the
image's range; drawn uniformly up to it, for half of the training images)."""


def augment_photometry(
    image: torch.Tensor, votes: torch.Tensor, *, noise: float = NOISE
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random changes real surveys make and our renderer does not vary enough: the galaxy's size in
    the frame, grey single-band inputs, colour balance, stretch (gamma), sky level and contrast,
    seeing (blur) and noise (white or correlated, up to ``noise``). Draws from torch's global
    generator, which the training loop seeds per epoch, so resumed runs replay it."""
    u = torch.rand(12).tolist()
    if u[0] < 0.5:
        image, votes = _rescale(image, votes, 0.55 + 0.8 * u[1])
    if u[2] < 0.3:  # one band, shown grey (FITS r-band cutouts, SpArcFiRe's PNGs)
        image = image.mean(0, keepdim=True).expand(3, -1, -1)
    elif u[2] < 0.8:
        image = image * (0.75 + 0.5 * torch.rand(3, 1, 1))
    image = image.clamp(0, 1) ** float(np.exp(np.log(0.6) + u[3] * np.log(1.6 / 0.6)))
    if u[4] < 0.35:  # a sky clipped at a low percentile sits mid-grey
        sky = 0.45 * u[5]
        image = sky + (1 - sky) * image
    image = image * (0.7 + 0.6 * u[6])
    if u[7] < 0.3:
        image = _gaussian_blur(image, 0.3 + 1.2 * u[8])
    if u[9] < 0.5:
        grain = torch.randn(1 if u[2] < 0.3 else 3, *image.shape[1:]).expand(3, -1, -1)
        if u[10] < 0.5:
            grain = _gaussian_blur(grain.contiguous(), 1.0)
            grain = grain / grain.std().clamp_min(1e-6)
        image = image + noise * u[11] * grain
    return image.clamp(0, 1), votes


class ArmDataset(torch.utils.data.Dataset):
    """(image, target) pairs from a prepared dataset.

    image: float32 (3, S, S) in [0, 1]. target: int64 (S, S) class indices ``votes >= threshold``
    for a single-threshold model, or the raw vote counts (int64, 0..15) when ``threshold`` is
    None, for models that learn all six levels at once: (S, S) for one structure, (K, S, S) for
    K ``structures`` (``spiral``, ``bar``) in that order. With ``augment``, one of the eight
    flips/rotations is drawn per item and applied identically to image and target, after the
    survey-like changes of :func:`augment_photometry` (unless ``photometric`` is False).
    """

    def __init__(
        self,
        dataset: PreparedDataset,
        *,
        split: str | None = "train",
        threshold: int | None = 3,
        augment: bool = False,
        photometric: bool = True,
        indices: Sequence[int] | None = None,
        structures: Sequence[str] = ("spiral",),
        noise: float = NOISE,
    ) -> None:
        self.folder = dataset.folder
        self.noise = noise
        self.rows = np.asarray(indices if indices is not None else dataset.indices(split), dtype=np.int64)
        self.threshold = threshold
        self.augment = augment
        self.photometric = photometric
        self.structures = tuple(structures)
        if threshold is not None and len(self.structures) != 1:
            raise GalsegError("a single-threshold target is for one structure; use threshold=None")
        self._images: np.ndarray | None = None
        self._votes: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self.rows)

    def _open(self) -> None:  # lazily, so each DataLoader worker maps the files itself
        self._images = np.load(self.folder / "images.npy", mmap_mode="r")
        self._votes = [np.load(self.folder / f"{s}.npy", mmap_mode="r") for s in self.structures]

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._images is None:
            self._open()
        row = self.rows[item]
        image = torch.from_numpy(np.array(self._images[row])).permute(2, 0, 1).float().div_(255.0)
        planes = [torch.from_numpy(np.array(v[row])).long() for v in self._votes]
        votes = planes[0] if len(planes) == 1 else torch.stack(planes)
        target = votes if self.threshold is None else (votes >= self.threshold).long()
        if self.augment:
            if self.photometric:
                image, votes = augment_photometry(image, votes, noise=self.noise)
                target = votes if self.threshold is None else (votes >= self.threshold).long()
            k, flip = DIHEDRAL[int(torch.randint(len(DIHEDRAL), ()))]
            image, target = dihedral(image, k, flip), dihedral(target, k, flip)
        return image.contiguous(), target.contiguous()
