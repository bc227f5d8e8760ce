"""Inference: a trained run as one object that maps images to P(votes >= th) at each threshold.

A run trained with one network per threshold and a run with one ordinal network answer the
same calls, so evaluation, prediction and the demo do not care which head made them.
"""

from __future__ import annotations

import gzip
import io
import os
import warnings
import zlib
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from astropy.io import fits
from astropy.table import Table, vstack
from astropy.wcs import WCS, FITSFixedWarning
from astropy.wcs.utils import proj_plane_pixel_scales

from galseg import GalsegError, __version__
from galseg.arms import Arm, ArmSummary, DiscGeometry, disc_geometry, measure_arms
from galseg.dataset import DIHEDRAL, dihedral, resize_image, undo_dihedral
from galseg.gz3d import N_HDUS, atomic_write_bytes, read_gz3d, wcs_header
from galseg.progress import Progress
from galseg.train import load_checkpoint, read_run, resolve_device
from galseg.unet import UNet, probabilities


@dataclass
class Predictor:
    """The networks of one run, ready for inference.

    Attributes
    ----------
    thresholds : the vote thresholds predicted, in order (the T axis of every output).
    size : the side, in pixels, that the networks were trained at.
    """

    run: Path
    units: list[tuple[UNet, tuple[int, ...]]]
    thresholds: tuple[int, ...]
    size: int
    head: str
    device: torch.device
    config: dict

    @torch.inference_mode()
    def probabilities(
        self, images: np.ndarray | torch.Tensor, *, batch_size: int = 16, tta: bool = False
    ) -> np.ndarray:
        """P(votes >= th) per pixel for (N, S, S, 3) uint8 images at the run's size.

        Returns float32 (N, T, S, S), T = len(self.thresholds). With ``tta``, the mean over the
        eight flips and quarter turns (see :meth:`tta_probabilities`).
        """
        return (
            self.tta_probabilities(images, batch_size=batch_size)[0]
            if tta
            else self._run(images, batch_size, [(0, False)])[0]
        )

    @torch.inference_mode()
    def tta_probabilities(
        self, images: np.ndarray | torch.Tensor, *, batch_size: int = 16
    ) -> tuple[np.ndarray, np.ndarray]:
        """Test-time augmentation: each image seen in the eight orientations of the square, each
        answer turned back, then (mean, standard deviation) across the eight, both (N, T, S, S).
        Galaxies have no preferred orientation, so the spread measures the network's doubt."""
        return self._run(images, batch_size, list(DIHEDRAL))

    def _run(
        self, images, batch_size: int, transforms: list[tuple[int, bool]]
    ) -> tuple[np.ndarray, np.ndarray]:
        images = torch.as_tensor(np.asarray(images))
        if images.ndim != 4 or images.shape[-1] != 3:
            raise GalsegError(f"expected images of shape (N, H, W, 3), got {tuple(images.shape)}")
        shape = (images.shape[0], len(self.thresholds), *images.shape[1:3])
        mean, spread = np.zeros(shape, dtype=np.float32), np.zeros(shape, dtype=np.float32)
        for start in range(0, images.shape[0], batch_size):
            batch = images[start : start + batch_size].to(self.device, non_blocking=True)
            x = batch.permute(0, 3, 1, 2).float().div_(255.0)
            views = torch.stack(
                [undo_dihedral(self._forward(dihedral(x, k, flip)), k, flip) for k, flip in transforms]
            )
            mean[start : start + len(batch)] = views.mean(0).cpu().numpy()
            if len(transforms) > 1:
                spread[start : start + len(batch)] = views.std(0, correction=0).cpu().numpy()
        return mean, spread

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, T, S, S) probabilities for a (n, 3, S, S) float batch."""
        cuda = self.device.type == "cuda"
        # channels_last: +29% inference on CPU, tensor-core layout on GPU (benchmarks/bench_model.py)
        x = x.contiguous(memory_format=torch.channels_last)
        out = torch.empty(x.shape[0], len(self.thresholds), *x.shape[2:], device=x.device)
        for model, unit_thresholds in self.units:
            with torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext():
                logits = model(x)
            p = probabilities(logits, model.args.head)
            p = p.unsqueeze(1) if p.ndim == 3 else p
            for k, th in enumerate(unit_thresholds):
                if th in self.thresholds:
                    out[:, self.thresholds.index(th)] = p[:, k]
        return out

    def select(self, thresholds: Sequence[int]) -> Predictor:
        """The same run restricted to some thresholds (networks not needed are dropped)."""
        missing = sorted(set(thresholds) - set(self.thresholds))
        if missing:
            raise GalsegError(
                f"{self.run}: has no network for threshold(s) {missing}; it has {self.thresholds}"
            )
        keep = tuple(t for t in self.thresholds if t in thresholds)
        units = [(m, ths) for m, ths in self.units if set(ths) & set(keep)]
        return replace(self, units=units, thresholds=keep)

    def predict_image(self, image: np.ndarray) -> np.ndarray:
        """P(votes >= th) for one (H, W, 3) uint8 image of any size, on its own pixel grid.

        The image is area-averaged to the run's size, predicted, and the probabilities are
        brought back to (T, H, W) by bilinear interpolation.
        """
        small = resize_image(image, self.size)[None]
        p = self.probabilities(small)[0]
        return upsample(p, image.shape[:2])

    def masks(self, image: np.ndarray) -> dict[int, np.ndarray]:
        """{threshold: (H, W) bool arm mask} for one image: the notebook entry point."""
        p = self.predict_image(image)
        return {th: p[k] > 0.5 for k, th in enumerate(self.thresholds)}


def upsample(probabilities: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(T, S, S) or (N, T, S, S) probability maps to (..., H, W) by bilinear interpolation."""
    t = torch.from_numpy(np.ascontiguousarray(probabilities, dtype=np.float32))
    squeeze = t.ndim == 3
    if squeeze:
        t = t[None]
    if tuple(t.shape[-2:]) != tuple(shape):
        t = F.interpolate(t, size=tuple(shape), mode="bilinear", align_corners=False)
    t = t.clamp_(0.0, 1.0)
    return (t[0] if squeeze else t).numpy()


def load(
    run: str | os.PathLike[str], *, device: str | torch.device = "auto", checkpoint: str = "best"
) -> Predictor:
    """Load every network of a run (the best epoch by default) for inference."""
    run = Path(run)
    record = read_run(run)
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    units = []
    thresholds: list[int] = []
    size = int(record["dataset_manifest"]["size"])
    for name, unit_thresholds in record["units"].items():
        model, _ = load_checkpoint(run / name / f"{checkpoint}.pt", dev)
        model = model.to(memory_format=torch.channels_last)
        units.append((model, tuple(unit_thresholds)))
        thresholds.extend(unit_thresholds)
    return Predictor(
        run=run,
        units=units,
        thresholds=tuple(thresholds),
        size=size,
        head=record["config"]["head"],
        device=dev,
        config=record["config"],
    )


# ----------------------------------------------------------------------------- inputs

IMAGE_SUFFIXES = (".fits", ".fits.gz", ".fit", ".fts", ".png", ".jpg", ".jpeg")
LIST_SUFFIXES = (".txt", ".lst", ".list")


def _is_image(path: Path) -> bool:
    return path.name.lower().endswith(IMAGE_SUFFIXES)


def expand_inputs(inputs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files, folders (searched recursively) and text files listing paths, in a stable order."""
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found.extend(
                sorted(
                    p for p in item.rglob("*") if p.is_file() and _is_image(p) and not p.name.startswith(".")
                )
            )
        elif item.name.lower().endswith(LIST_SUFFIXES) and item.is_file():
            for line in item.read_text().splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    path = Path(line)
                    found.append(path if path.is_absolute() else item.parent / path)
        else:
            found.append(item)  # missing or unreadable files get an error row later
    return found


@dataclass
class InputImage:
    """One input, read: its name, RGB pixels, WCS (or None) and where it came from."""

    name: str
    image: np.ndarray  # (H, W, 3) uint8
    wcs: WCS | None
    source: str


def _stretch_to_uint8(data: np.ndarray) -> np.ndarray:
    """Scale a float image (one or more bands) to 0..255: asinh between the sky and the 99.9th
    percentile, as survey colour cutouts are made."""
    data = np.nan_to_num(np.asarray(data, dtype=np.float32))
    sky = np.median(data)
    noise = 1.4826 * np.median(np.abs(data - sky)) or 1.0
    top = max(np.percentile(data, 99.9) - sky, 10 * noise)
    x = np.clip((data - sky) / noise, 0, None)
    return np.clip(255 * np.arcsinh(x) / np.arcsinh(top / noise), 0, 255).astype(np.uint8)


def _read_fits_image(path: Path, raw: bytes) -> tuple[np.ndarray, WCS | None]:
    with fits.open(io.BytesIO(raw), memmap=False) as hdul:
        hdu = next((h for h in hdul if h.is_image and h.data is not None and h.data.ndim in (2, 3)), None)
        if hdu is None:
            raise GalsegError(f"{path}: no 2-D image or 3-plane cube in any HDU")
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
    image = planes if planes.dtype == np.uint8 else _stretch_to_uint8(planes)
    return image, wcs


def read_input(path: Path) -> InputImage:
    """Read a GZ:3D file, a plain FITS image or cube, or a PNG/JPEG cutout as 8-bit RGB."""
    name = path.name
    for suffix in (".fits.gz", *IMAGE_SUFFIXES):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    if not path.is_file():
        raise GalsegError(f"{path}: no such file")
    lower = path.name.lower()
    if lower.endswith((".png", ".jpg", ".jpeg")):
        try:
            pixels = mpimg.imread(path)
        except (OSError, ValueError, SyntaxError) as exc:
            raise GalsegError(f"{path}: not a readable image ({exc})") from exc
        if pixels.dtype != np.uint8:
            pixels = np.clip(np.rint(pixels * 255), 0, 255).astype(np.uint8)
        if pixels.ndim == 2:
            pixels = np.repeat(pixels[..., None], 3, axis=2)
        return InputImage(name, np.ascontiguousarray(pixels[..., :3]), None, str(path))
    raw = path.read_bytes()
    try:
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        with fits.open(io.BytesIO(raw), memmap=False) as hdul:
            is_gz3d = len(hdul) == N_HDUS and hdul[0].data is not None and hdul[0].data.ndim == 3
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise GalsegError(f"{path}: not a readable FITS file ({_short(exc)})") from exc
    if is_gz3d:
        galaxy = read_gz3d(path, outlines=False)
        return InputImage(galaxy.mangaid, galaxy.image, galaxy.wcs, str(path))
    try:
        image, wcs = _read_fits_image(path, raw)
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise GalsegError(f"{path}: not a readable FITS image ({_short(exc)})") from exc
    return InputImage(name, image, wcs, str(path))


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def footprint(image: np.ndarray) -> np.ndarray:
    """Pixels belonging to the galaxy (and anything as bright): smoothed luminance above the sky
    by 3 robust sigmas. The denominator of the arm fraction 'of the galaxy'."""
    grey = image.astype(np.float32).mean(axis=2)
    k = 5  # a 5x5 box mean through cumulative sums: noise down 5x before thresholding
    padded = np.pad(grey, k // 2, mode="edge")
    c = np.cumsum(np.cumsum(np.pad(padded, ((1, 0), (1, 0))), axis=0), axis=1)
    smooth = (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / (k * k)
    sky = np.median(grey)
    noise = 1.4826 * np.median(np.abs(grey - sky)) or 1.0
    return smooth > sky + 3 * noise / k


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
)
STAT_DTYPES = ("i2", "?", "i8", "f4", "f4", "f4", "i2", "f4", "f4", "U1", "f4")
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


def output_names(paths: Sequence[Path]) -> list[str]:
    """A unique, filesystem-safe output name per input, known before reading (for resuming)."""
    names, seen = [], {}
    for path in paths:
        stem = path.name
        for suffix in (".fits.gz", *IMAGE_SUFFIXES):
            if stem.lower().endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem) or "image"
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return names


def arm_statistics(probabilities: np.ndarray, thresholds: Sequence[int], galaxy: np.ndarray) -> Table:
    """Per threshold: has arms, arm pixels, arm fraction of the image and of the galaxy footprint,
    and the mean probability over the arm pixels (NaN without any)."""
    rows = []
    n_galaxy = max(int(galaxy.sum()), 1)
    for k, th in enumerate(thresholds):
        mask = probabilities[k] > 0.5
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


def measure_all(
    source: InputImage, probabilities: np.ndarray, thresholds: Sequence[int]
) -> tuple[DiscGeometry, dict[int, tuple[list[Arm], ArmSummary]]]:
    """Arms at every threshold, with one disc geometry measured from the image and shared."""
    geometry = disc_geometry(source.image)
    arcsec = None
    if source.wcs is not None:
        arcsec = float(np.mean(proj_plane_pixel_scales(source.wcs.celestial)) * 3600)
        arcsec = arcsec if np.isfinite(arcsec) and arcsec > 0 else None
    return geometry, {
        th: measure_arms(probabilities[k] > 0.5, source.image, geometry=geometry, arcsec_per_px=arcsec)
        for k, th in enumerate(thresholds)
    }


def add_arm_summaries(stats: Table, arms: dict[int, tuple[list[Arm], ArmSummary]], *, measured: bool) -> None:
    """Per-threshold arm count, pitch, chirality columns (N_ARMS -1 when arms were not measured)."""
    summaries = [arms[int(th)][1] if measured else None for th in stats["TH"]]
    stats["N_ARMS"] = np.array([s.n_arms if s else -1 for s in summaries], dtype="i2")
    stats["PITCH_DEG"] = np.array([s.pitch_deg if s else np.nan for s in summaries], dtype="f4")
    stats["PITCH_ERR_DEG"] = np.array([s.pitch_err_deg if s else np.nan for s in summaries], dtype="f4")
    stats["CHIRALITY"] = np.array([s.chirality if s else "" for s in summaries], dtype="U1")
    stats["CHIRALITY_AGREEMENT"] = np.array(
        [s.chirality_agreement if s else np.nan for s in summaries], dtype="f4"
    )


def arms_hdu(arms: dict[int, tuple[list[Arm], ArmSummary]], geometry: DiscGeometry) -> fits.BinTableHDU:
    """Every fitted arm of one galaxy (one row each), with the disc geometry in the header."""
    rows = [
        {"TH": th, "ARM": n + 1, **{k.upper(): v for k, v in arm.as_row().items()}}
        for th, (found, _) in arms.items()
        for n, arm in enumerate(found)
    ]
    table = Table(rows=rows) if rows else Table(names=("TH", "ARM", *ARM_FIELDS), dtype=ARM_DTYPES[3:])
    hdu = fits.BinTableHDU(table, name="ARMS")
    hdu.header["CENTX"] = (geometry.x, "disc centre, image x (0-based)")
    hdu.header["CENTY"] = (geometry.y, "disc centre, image y (0-based, down)")
    hdu.header["AXRATIO"] = (geometry.axis_ratio, "disc axis ratio b/a from light moments")
    hdu.header["PA_RAD"] = (geometry.position_angle, "major axis, anticlockwise from image x as shown")
    hdu.header["CHIRCONV"] = "Z: arms turn anticlockwise outward as displayed (row 0 at top)"
    return hdu


def mask_hdus(
    probabilities: np.ndarray,
    thresholds: Sequence[int],
    wcs: WCS | None,
    stats: Table,
    provenance: dict[str, str],
    *,
    spread: np.ndarray | None = None,
) -> fits.HDUList:
    """The per-galaxy output: one uint8 mask per threshold, the probabilities, and the statistics."""
    header = wcs_header(wcs) if wcs is not None else fits.Header()
    primary = fits.PrimaryHDU(header=header.copy())
    for key, value in provenance.items():
        primary.header[key[:8].upper()] = value
    hdus: list = [primary]
    for k, th in enumerate(thresholds):
        hdu = fits.ImageHDU(
            (probabilities[k] > 0.5).astype(np.uint8), header=header.copy(), name=f"MASK_TH{th}"
        )
        hdu.header["THRESH"] = (th, "arm where P(votes >= THRESH) > 0.5")
        hdus.append(hdu)
    prob = fits.ImageHDU(
        np.rint(probabilities * PROBABILITY_SCALE).astype(np.uint8), header=header.copy(), name="PROB"
    )
    prob.header["PSCALE"] = (PROBABILITY_SCALE, "P(votes >= th) = value / PSCALE")
    for k, th in enumerate(thresholds):
        prob.header[f"THRESH{k + 1}"] = (th, f"vote threshold of plane {k + 1}")
    hdus.append(prob)
    if spread is not None:
        uncert = fits.ImageHDU(
            np.rint(spread * PROBABILITY_SCALE).astype(np.uint8), header=header.copy(), name="UNCERT"
        )
        uncert.header["PSCALE"] = (PROBABILITY_SCALE, "std of P over the 8 orientations = value / PSCALE")
        hdus.append(uncert)
    hdus.append(fits.BinTableHDU(stats, name="STATS"))
    return fits.HDUList(hdus)


class _Inputs(torch.utils.data.Dataset):
    """Reads and shrinks one input per item in DataLoader workers, so reading overlaps the nets."""

    def __init__(self, paths: Sequence[Path], size: int) -> None:
        self.paths, self.size = list(paths), size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        path = self.paths[i]
        try:
            item = read_input(path)
            return {
                "i": i,
                "input": item,
                "small": resize_image(item.image, self.size),
                "footprint": footprint(item.image),
                "error": None,
            }
        except GalsegError as exc:
            return {"i": i, "error": str(exc)}
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop a survey
            return {"i": i, "error": f"{path}: {type(exc).__name__}: {_short(exc)}"}


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
    """Predict every input into ``out``: ``masks/NAME.fits.gz`` per galaxy and one catalogue.

    Inputs already written are skipped (rerun to resume); unreadable ones get a row with their
    error. Under torchrun each rank takes every world-th input and writes its own catalogue part;
    rank 0 merges the parts in input order. Returns the merged catalogue (rank 0) or this rank's.
    With ``tta`` the masks come from the mean over the eight orientations and an ``UNCERT`` HDU
    holds their spread.
    """
    out = Path(out)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    suffix = "".join(Path(catalogue).suffixes[-1:]).lower()
    if suffix not in CATALOGUE_FORMATS:
        raise GalsegError(f"--catalogue {catalogue}: use .ecsv, .csv, .fits or .parquet")
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    paths = expand_inputs(inputs)
    if not paths:
        raise GalsegError("no inputs: give image files, folders or text files listing them")
    names = output_names(paths)
    mine = list(range(rank, len(paths), world))
    todo = [i for i in mine if not (out / "masks" / f"{names[i]}.fits.gz").exists()]
    errors: dict[int, str] = {}
    written: dict[int, tuple] = {}
    thresholds = predictor.thresholds
    loader = torch.utils.data.DataLoader(
        _Inputs([paths[i] for i in todo], predictor.size),
        batch_size=None,
        num_workers=workers,
        collate_fn=lambda item: item,
        prefetch_factor=4 if workers else None,
    )
    bar = Progress(len(todo), label="predict", enabled=show_progress and rank == 0)
    batch: list[dict] = []

    def flush() -> None:
        if not batch:
            return
        small = np.stack([b["small"] for b in batch])
        if tta:
            p_small, spread_small = predictor.tta_probabilities(small, batch_size=batch_size)
        else:
            p_small, spread_small = predictor.probabilities(small, batch_size=batch_size), None
        for j, (item, p) in enumerate(zip(batch, p_small, strict=True)):
            source = item["input"]
            p_full = upsample(p, source.image.shape[:2])
            spread = upsample(spread_small[j], source.image.shape[:2]) if tta else None
            stats = arm_statistics(p_full, thresholds, item["footprint"])
            geometry, arms = measure_all(source, p_full, thresholds) if measure_arms_too else (None, {})
            add_arm_summaries(stats, arms, measured=measure_arms_too)
            provenance = {
                "GALSEG": __version__,
                "RUN": str(predictor.run)[-60:],
                "NAME": source.name,
                "SOURCE": Path(source.source).name[-60:],
            }
            index = todo[item["i"]]
            target = out / "masks" / f"{names[index]}.fits.gz"
            buffer = io.BytesIO()
            hdus = mask_hdus(p_full, thresholds, source.wcs, stats, provenance, spread=spread)
            if geometry is not None:
                hdus.append(arms_hdu(arms, geometry))
            hdus.writeto(buffer)
            atomic_write_bytes(target, gzip.compress(buffer.getvalue(), compresslevel=1, mtime=0))
            # kept for the catalogue, so only galaxies from an earlier run are read back
            written[index] = (
                source.name,
                source.image.shape[:2],
                stats.as_array(),  # plain structured arrays: a Table per galaxy would grow memory
                np.asarray(hdus["ARMS"].data) if geometry is not None else None,
            )
            if overlay is not None:
                overlay(
                    source,
                    p_full,
                    thresholds,
                    out / "overlays" / f"{names[index]}.png",
                    arms=arms,
                    geometry=geometry,
                )
        bar.update(len(batch))
        batch.clear()

    for item in loader:
        if item["error"] is not None:
            errors[todo[item["i"]]] = item["error"]
            bar.update()
            continue
        batch.append(item)
        if len(batch) >= batch_size:
            flush()
    flush()

    part, arm_part = _catalogue_rows(paths, names, mine, errors, written, out)
    arms_name = f"arms{Path(catalogue).suffix}"
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
                "RUN": str(predictor.run)[-60:],
                "HEAD": predictor.head,
                "THRESHS": ",".join(map(str, thresholds)),
            }
        )
    _write_table(part, out / catalogue)
    if measure_arms_too:
        _write_table(arm_part, out / arms_name)
    return part


CATALOGUE_FORMATS = {".ecsv": "ascii.ecsv", ".csv": "ascii.csv", ".fits": "fits", ".parquet": "parquet"}


def read_catalogue(path: str | os.PathLike[str]) -> Table:
    """A prediction catalogue in any of its formats, with empty text restored (not masked)."""
    path = Path(path)
    table = Table.read(path, format=CATALOGUE_FORMATS.get(path.suffix.lower()))
    for name in ("ERROR", "OUTPUT", "SOURCE", "NAME"):
        if name in table.colnames and hasattr(table[name], "filled"):
            table[name] = table[name].filled("")
    return table


def _write_table(table: Table, path: Path) -> None:
    fmt = CATALOGUE_FORMATS[path.suffix.lower()]
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.part{path.suffix}")
    try:
        table.write(tmp, format=fmt, overwrite=True)
    except ImportError as exc:
        raise GalsegError(
            f"{path}: writing {fmt} needs an extra package ({exc}); use .ecsv, .csv or .fits"
        ) from exc
    os.replace(tmp, path)


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
}
"""The catalogue values of an input that could not be predicted (one row, TH = 0, with its error)."""


def _plain(value):
    """A numpy or FITS scalar as a plain Python value (FITS text comes back as stripped bytes)."""
    value = value.item() if hasattr(value, "item") else value
    return value.decode().strip() if isinstance(value, bytes) else value


def _catalogue_rows(
    paths: Sequence[Path],
    names: Sequence[str],
    mine: Sequence[int],
    errors: dict[int, str],
    written: dict[int, tuple],
    out: Path,
) -> tuple[Table, Table]:
    """This rank's rows in input order: each galaxy's statistics (from this run, or read back from
    the file an earlier run wrote), or its error; and its arms, one row per fitted arm."""
    rows, arm_rows = [], []
    for i in mine:
        target = out / "masks" / f"{names[i]}.fits.gz"
        if i in errors or not target.exists():
            rows.append(
                {
                    "ORDER": i,
                    "NAME": names[i],
                    "SOURCE": str(paths[i]),
                    "OUTPUT": "",
                    "HEIGHT": 0,
                    "WIDTH": 0,
                    **_UNMEASURED,
                    "ERROR": errors.get(i, "not predicted"),
                }
            )
            continue
        if i in written:
            name, (height, width), stats, arms = written[i]
        else:
            with fits.open(target) as hdul:
                stats = np.asarray(hdul["STATS"].data)
                height, width = hdul["PROB"].data.shape[1:]
                name = str(hdul[0].header.get("NAME", names[i]))
                arms = np.asarray(hdul["ARMS"].data) if "ARMS" in hdul else None
        for arm in arms if arms is not None else []:
            arm_rows.append(
                {
                    "ORDER": i,
                    "NAME": name,
                    "SOURCE": str(paths[i]),
                    **{c: _plain(arm[c]) for c in arm.dtype.names},
                }
            )
        for r in stats:
            rows.append(
                {
                    "ORDER": i,
                    "NAME": name,
                    "SOURCE": str(paths[i]),
                    "OUTPUT": str(target.relative_to(out)),
                    "HEIGHT": height,
                    "WIDTH": width,
                    **{c: _plain(r[c]) for c in STAT_COLUMNS},
                    "ERROR": "",
                }
            )
    arms = Table(rows=arm_rows) if arm_rows else Table(names=ARM_COLUMNS, dtype=ARM_DTYPES)
    columns = ("ORDER", "NAME", "SOURCE", "OUTPUT", "HEIGHT", "WIDTH", *STAT_COLUMNS, "ERROR")
    if not rows:
        return Table(
            names=columns,
            dtype=("i8", "U64", "U256", "U128", "i4", "i4", *STAT_DTYPES, "U256"),
        ), arms
    return Table(rows=rows, names=columns), arms
