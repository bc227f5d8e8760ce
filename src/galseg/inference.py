"""Inference: a trained run as one object that maps images to P(votes >= th) at each threshold.

A run trained with one network per threshold and a run with one ordinal network answer the
same calls, so evaluation, prediction and the demo do not care which head made them. A run of
several structures (``--target both``: arms and bar) returns one plane per (structure,
threshold), structure-major; :meth:`Predictor.split` names them and :meth:`Predictor.only`
narrows a run to one structure. The arithmetic precision is chosen per device
(:func:`choose_precision`): bf16 autocast where the hardware runs it natively, float32
elsewhere. ``zooms`` adds centred crops of each image, for cutouts framed more loosely than
GZ:3D's (:func:`zoom_views`). ``cut`` is the probability above which a pixel is marked
(:data:`CUT`; :data:`REAL_CUT` for real survey images with a network trained on synthetic ones).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from galseg import HEXAGON_MODES, TARGETS, GalsegError
from galseg.dataset import DIHEDRAL, dihedral, resize_image, undo_dihedral
from galseg.footprint import drop_pieces, galaxy_region, outside_galaxy
from galseg.gz3d import paint_out_hexagon
from galseg.orient import canonical, turn, turn_back
from galseg.train import autocast, choose_precision, load_checkpoint, read_run, resolve_device
from galseg.unet import UNet, probabilities

CUT = 0.5
"""A pixel is marked where P(votes >= th) > CUT: the paper's argmax of two classes, right where the
probabilities are calibrated, as on images like the training ones."""
REAL_CUT = 0.2
"""The cut for real survey images with a network trained on synthetic galaxies. Such networks rank
real arm pixels well but are under-confident on them (the probabilities shrink under the change
of domain), so at 0.5 they mark few. Chosen on the real check (``shared/real``; images for
choosing, never training): the lowest cut at which no more than one in ten of the smooth
galaxies gets arms at th = 3, on the demo's network, then checked on three networks trained on
the H200 (docs/tried.md, "Real images"). The ready model carries its own
(:func:`galseg.ready.ready_cut`): its weights are more confident on real images."""
REAL_ZOOMS = (1.0, 0.6)
"""The zooms for real survey cutouts, which frame their galaxies more loosely than GZ:3D: the image
whole and its middle 60% enlarged (chosen on ``shared/real``: docs/tried.md, "Real images")."""


def check_cut(cut: float) -> float:
    """``cut`` if it is a probability strictly between 0 and 1, else a one-line error."""
    if not 0.0 < cut < 1.0:
        raise GalsegError(
            f"--cut {cut}: a probability between 0 and 1 (0.5 as trained, {REAL_CUT} for real images)"
        )
    return float(cut)


@dataclass
class Predictor:
    """The networks of one run, ready for inference.

    Attributes
    ----------
    thresholds
        the vote thresholds predicted, in order.
    structures
        what is segmented ("spiral", "bar"), in order; the plane axis of every output
        is structures x thresholds, structure-major (just the thresholds for one structure).
    size
        the side, in pixels, that the networks were trained at.
    """

    run: Path
    units: list[tuple[UNet, tuple[int, ...]]]
    thresholds: tuple[int, ...]
    size: int
    head: str
    device: torch.device
    config: dict
    precision: str = "float32"
    run_id: str = ""
    """Digest of the checkpoints' bytes and the precision: outputs record it, so a rerun can
    tell its own results from another run's."""
    structures: tuple[str, ...] = ("spiral",)
    compiled: bool = False
    """Networks wrapped by torch.compile: batches are padded to one size, so it compiles once."""
    zooms: tuple[float, ...] = (1.0,)
    """Centred crops (as a share of the image's side) each predicted on its own; the pixel's
    probability is the highest over them (see :func:`zoom_views`)."""
    cut: float = CUT
    """A pixel is marked (masks, statistics, measurements, figures) where its probability exceeds
    this; the probabilities themselves are never changed."""
    hexagon: str = "paint"
    """A MaNGA hexagon burned into an image: painted out before the network ("paint",
    :func:`galseg.gz3d.paint_out_hexagon`) or kept ("keep"), as the run's training images were."""

    @property
    def planes(self) -> int:
        return len(self.structures) * len(self.thresholds)

    def split(self, p: np.ndarray) -> dict[str, np.ndarray]:
        """{structure: its (..., T, H, W) planes} of an output with the plane axis third from last."""
        return by_structure(p, self.structures, len(self.thresholds))

    def only(self, structure: str) -> Predictor:
        """The same run answering for one structure (its network still computes all of them)."""
        if structure not in self.structures:
            raise GalsegError(f"{self.run}: segments {', '.join(self.structures)}, not {structure}")
        return replace(self, structures=(structure,))

    @torch.inference_mode()
    def probabilities(
        self, images: np.ndarray | torch.Tensor, *, batch_size: int = 16, tta: bool = False
    ) -> np.ndarray:
        """P(votes >= th) per pixel for (N, S, S, 3) uint8 images at the run's size.

        Returns float32 (N, P, S, S), P = :attr:`planes` (the thresholds, per structure). With
        ``tta``, the mean over the eight flips and quarter turns (see :meth:`tta_probabilities`).
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
        shape = (images.shape[0], self.planes, *images.shape[1:3])
        mean, spread = np.zeros(shape, dtype=np.float32), np.zeros(shape, dtype=np.float32)
        for start in range(0, images.shape[0], batch_size):
            batch = images[start : start + batch_size].to(self.device, non_blocking=True)
            x = batch.permute(0, 3, 1, 2).float().div_(255.0)
            n = x.shape[0]
            if self.compiled and n < batch_size:  # one input shape: no recompilation for the last batch
                x = torch.cat([x, x.new_zeros(batch_size - n, *x.shape[1:])])
            views = torch.stack(
                [undo_dihedral(self._forward(dihedral(x, k, flip)), k, flip)[:n] for k, flip in transforms]
            )
            mean[start : start + len(batch)] = views.mean(0).cpu().numpy()
            if len(transforms) > 1:
                spread[start : start + len(batch)] = views.std(0, correction=0).cpu().numpy()
        return mean, spread

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, P, S, S) probabilities for a (n, 3, S, S) float batch."""
        # channels_last: +29% inference on CPU, tensor-core layout on GPU (benchmarks/bench_model.py)
        x = x.contiguous(memory_format=torch.channels_last)
        t = len(self.thresholds)
        out = torch.empty(x.shape[0], self.planes, *x.shape[2:], device=x.device)
        for model, unit_thresholds in self.units:
            with autocast(self.device, self.precision):
                logits = model(x)
            p = probabilities(logits.float(), model.args.head)
            p = p.unsqueeze(1) if p.ndim == 3 else p
            unit_structures = model.args.structures
            for j, structure in enumerate(unit_structures):
                if structure not in self.structures:
                    continue
                first = self.structures.index(structure) * t
                for k, th in enumerate(unit_thresholds):
                    if th in self.thresholds:
                        out[:, first + self.thresholds.index(th)] = p[:, j * len(unit_thresholds) + k]
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

        The image is turned to its canonical orientation (:mod:`galseg.orient`, as ``galseg
        predict`` does, so a mirror image gets the mirrored answer); each of :attr:`zooms`' centred
        crops is area-averaged to the run's size, predicted, and the probabilities are brought
        back to (P, H, W) by bilinear interpolation; marked pieces that do not reach the galaxy's
        own region are dropped (:func:`galseg.footprint.outside_galaxy`); then turned back.
        """
        orientation = canonical(image)
        turned = self.clean(turn(image, orientation))
        views = zoom_views(turned, self.zooms, self.size)
        p = combine_zooms(self.probabilities(views), self.zooms, turned.shape[:2])
        p = drop_pieces(p, outside_galaxy(p, galaxy_region(turned), self.cut))
        return np.ascontiguousarray(turn_back(p, orientation, axes=(1, 2)))

    def clean(self, image: np.ndarray, ifu: float | None = None) -> np.ndarray:
        """The image as the networks should see it (:func:`clean_image`)."""
        return clean_image(image, self.hexagon, ifu)

    def masks(self, image: np.ndarray, structure: str | None = None) -> dict[int, np.ndarray]:
        """{threshold: (H, W) bool mask} of one structure (the run's first: arms, unless it
        only segments bars) for one image: the notebook entry point."""
        p = self.split(self.predict_image(image))[structure or self.structures[0]]
        return {th: p[k] > self.cut for k, th in enumerate(self.thresholds)}


def clean_image(image: np.ndarray, hexagon: str, ifu: float | None = None) -> np.ndarray:
    """``image`` with a burned-in MaNGA hexagon painted out, unless ``hexagon`` is "keep"
    (``ifu``: the GZ:3D bundle size, when known)."""
    return image if hexagon == "keep" else paint_out_hexagon(image, ifu)


def _crop(shape: tuple[int, int], zoom: float) -> tuple[slice, slice]:
    """The centred crop of ``zoom`` times each side (at least 8 pixels)."""
    h, w = shape
    ch, cw = max(8, int(round(h * zoom))), max(8, int(round(w * zoom)))
    y0, x0 = max((h - ch) // 2, 0), max((w - cw) // 2, 0)
    return slice(y0, y0 + ch), slice(x0, x0 + cw)


def zoom_views(image: np.ndarray, zooms: Sequence[float], size: int) -> np.ndarray:
    """(Z, size, size, 3): the image's centred crops of ``zooms`` times its side, each shrunk to
    the network's size. Zoom 1 is the whole image; 0.6 shows the middle 60% larger, as a galaxy
    framed more tightly (GZ:3D frames its galaxies more tightly than most survey cutouts)."""
    return np.stack([resize_image(image[_crop(image.shape[:2], z)], size) for z in zooms])


def combine_zooms(p: np.ndarray, zooms: Sequence[float], shape: tuple[int, int]) -> np.ndarray:
    """(P, H, W) from the (Z, P, S, S) answers of :func:`zoom_views`: each brought back to its
    crop by bilinear interpolation, zero outside it, and the highest probability per pixel."""
    out = np.zeros((p.shape[1], *shape), dtype=np.float32)
    for view, zoom in zip(p, zooms, strict=True):
        rows, cols = _crop(shape, zoom)
        crop = upsample(view, (rows.stop - rows.start, cols.stop - cols.start))
        np.maximum(out[:, rows, cols], crop, out=out[:, rows, cols])
    return out


def by_structure(p: np.ndarray, structures: Sequence[str], n_thresholds: int) -> dict[str, np.ndarray]:
    """Name the planes of an output (plane axis third from last, structure-major) by structure."""
    t = n_thresholds
    return {s: p[..., k * t : (k + 1) * t, :, :] for k, s in enumerate(structures)}


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


def _check_unit(
    args, name: str, thresholds: tuple[int, ...], structures: tuple[str, ...], record: Path, path: Path
) -> None:
    """The run record's word for a unit must be what its weights compute: which planes, for which
    thresholds and structures (otherwise a plane would be written under another's name)."""
    if args.head == "ordinal":
        said, has = (thresholds, structures), (tuple(args.thresholds), tuple(args.structures))
    else:
        said, has = (structures, len(thresholds)), (tuple(args.structures), 1)
    if said != has:
        levels = list(args.thresholds) if args.head == "ordinal" else "one threshold"
        raise GalsegError(
            f"{record}: unit {name} is said to give {list(structures)} at thresholds {list(thresholds)}, "
            f"but {path} computes {list(args.structures)} at {levels}"
        )


def load(
    run: str | os.PathLike[str],
    *,
    device: str | torch.device = "auto",
    checkpoint: str = "best",
    precision: str = "auto",
    compile: bool = False,
    zooms: Sequence[float] = (1.0,),
    cut: float = CUT,
    hexagon: str | None = None,
) -> Predictor:
    """Load every network of a run (the best epoch by default) for inference.

    ``precision``: 'auto' (bf16 autocast on CUDA and on CPUs with native bf16, else float32),
    'float32' or 'bf16'. ``compile``: wrap each network in ``torch.compile`` (a minute or
    more of compiling first; worth it for long surveys, see benchmarks/bench_predict.py).
    ``zooms``: see :func:`zoom_views`; (1.0,), the whole image, as the networks were trained.
    ``cut``: see :attr:`Predictor.cut`. ``hexagon``: see :attr:`Predictor.hexagon`; None, as the
    run's dataset was prepared (runs from before the choice: "paint").
    """
    cut = check_cut(cut)
    zooms = tuple(float(z) for z in zooms)
    if not zooms or not all(0.1 <= z <= 1.0 for z in zooms):
        raise GalsegError(
            f"--zoom {','.join(map(str, zooms)) or '(none)'}: shares of the side between 0.1 and 1"
        )
    run = Path(run)
    record = read_run(run)
    hexagon = hexagon or record["dataset_manifest"].get("hexagon") or "paint"
    if hexagon not in HEXAGON_MODES:
        raise GalsegError(f"--hexagon {hexagon!r}: choose {' or '.join(HEXAGON_MODES)}")
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    units = []
    thresholds: list[int] = []
    size = int(record["dataset_manifest"]["size"])
    chosen = choose_precision(precision, dev)
    digest = hashlib.sha256()
    target = record["config"].get("target", "spiral")  # runs from before bars: arms (read_run checked it)
    for name, unit_thresholds in record["units"].items():
        path = run / name / f"{checkpoint}.pt"
        model, _ = load_checkpoint(path, dev)
        _check_unit(model.args, name, tuple(unit_thresholds), TARGETS[target], run / "run.json", path)
        with open(path, "rb") as fh:
            digest.update(hashlib.file_digest(fh, "sha256").digest())
        model = model.to(memory_format=torch.channels_last)
        if compile:
            model.forward = torch.compile(model.forward)  # keeps .args and the module's own attributes
        units.append((model, tuple(unit_thresholds)))
        thresholds.extend(unit_thresholds)
    return Predictor(
        run=run,
        structures=TARGETS[target],
        units=units,
        thresholds=tuple(thresholds),
        size=size,
        head=record["config"]["head"],
        device=dev,
        config=record["config"],
        precision=chosen,
        run_id=f"{digest.hexdigest()[:16]}:{chosen}",
        compiled=compile,
        zooms=zooms,
        cut=cut,
        hexagon=hexagon,
    )


def load_ready(**options) -> Predictor:
    """The network shipped with galseg (:func:`galseg.ready.ready_run`) at the settings for real
    survey cutouts, ``zooms=REAL_ZOOMS`` and the cut chosen for its weights
    (:func:`galseg.ready.ready_cut`), as ``galseg predict`` without a run uses it; ``options`` are
    :func:`load`'s and override those two."""
    from galseg.ready import ready_cut, ready_run

    return load(ready_run(), **{"zooms": REAL_ZOOMS, "cut": ready_cut(), **options})
