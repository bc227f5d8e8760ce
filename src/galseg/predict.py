"""Inference: a trained run as one object that maps images to P(votes >= th) at each threshold.

A run trained with one network per threshold and a run with one ordinal network answer the
same calls, so evaluation, prediction and the demo do not care which head made them.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from galseg import GalsegError
from galseg.dataset import resize_image
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
    def probabilities(self, images: np.ndarray | torch.Tensor, *, batch_size: int = 16) -> np.ndarray:
        """P(votes >= th) per pixel for (N, S, S, 3) uint8 images at the run's size.

        Returns float32 (N, T, S, S), T = len(self.thresholds).
        """
        images = torch.as_tensor(np.asarray(images))
        if images.ndim != 4 or images.shape[-1] != 3:
            raise GalsegError(f"expected images of shape (N, H, W, 3), got {tuple(images.shape)}")
        out = np.empty((images.shape[0], len(self.thresholds), *images.shape[1:3]), dtype=np.float32)
        cuda = self.device.type == "cuda"
        for start in range(0, images.shape[0], batch_size):
            batch = images[start : start + batch_size].to(self.device, non_blocking=True)
            x = batch.permute(0, 3, 1, 2).float().div_(255.0)
            if cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            column = 0
            for model, thresholds in self.units:
                with torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext():
                    logits = model(x)
                p = probabilities(logits, model.args.head)
                p = p.unsqueeze(1) if p.ndim == 3 else p
                out[start : start + len(batch), column : column + len(thresholds)] = p.cpu().numpy()
                column += len(thresholds)
        return out

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


def load(run: str | os.PathLike[str], *, device: str = "auto", checkpoint: str = "best") -> Predictor:
    """Load every network of a run (the best epoch by default) for inference."""
    run = Path(run)
    record = read_run(run)
    dev = resolve_device(device)
    units = []
    thresholds: list[int] = []
    size = int(record["dataset_manifest"]["size"])
    for name, unit_thresholds in record["units"].items():
        model, _ = load_checkpoint(run / name / f"{checkpoint}.pt", dev)
        if dev.type == "cuda":
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
