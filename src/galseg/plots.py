"""Every figure galseg makes. Each function takes arrays or tables and writes one PNG."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on survey nodes or CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ARM_CMAP = "magma"


def _save(fig: plt.Figure, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.part.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def galaxy_grid(
    images: Sequence[np.ndarray],
    votes: Sequence[np.ndarray],
    titles: Sequence[str],
    path: str | os.PathLike[str],
    *,
    columns: int = 4,
) -> Path:
    """Pairs of panels per galaxy: the RGB image, and the image with the spiral vote counts.

    Parameters
    ----------
    images : (H, W, 3) uint8 arrays; votes : (H, W) vote-count arrays on the same grid.
    """
    n = len(images)
    rows = int(np.ceil(n / columns))
    fig, axes = plt.subplots(rows, 2 * columns, figsize=(2.0 * 2 * columns, 2.1 * rows), squeeze=False)
    vmax = max(15.0, max((float(v.max()) for v in votes), default=15.0))
    for ax in axes.flat:
        ax.set_axis_off()
    for i, (image, vote, title) in enumerate(zip(images, votes, titles, strict=True)):
        ax_img, ax_votes = axes[i // columns, 2 * (i % columns)], axes[i // columns, 2 * (i % columns) + 1]
        ax_img.imshow(image, origin="upper")
        ax_img.set_title(title, fontsize=7)
        ax_votes.imshow(image, origin="upper", alpha=0.55)
        shown = np.ma.masked_equal(vote, 0)
        ax_votes.imshow(shown, origin="upper", cmap=ARM_CMAP, vmin=0, vmax=vmax, alpha=0.9)
        ax_votes.set_title(f"arm votes (max {int(vote.max())})", fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def gz3d_preview(paths: Sequence[str | os.PathLike[str]], path: str | os.PathLike[str]) -> Path:
    """Grid of GZ:3D files (image and spiral votes), titled with their identity and truth if any."""
    from galseg.gz3d import read_gz3d

    galaxies = [read_gz3d(p) for p in paths]
    titles = []
    for g in galaxies:
        meta = g.metadata
        truth = ""
        if "SYNTH_KIND" in meta.colnames:
            truth = f" {meta['SYNTH_KIND'][0]}"
            if meta["SYNTH_N_ARMS"][0]:
                truth += (
                    f" m={meta['SYNTH_N_ARMS'][0]} {meta['SYNTH_CHIRALITY'][0]}"
                    f" {meta['SYNTH_PITCH_DEG'][0]:.0f}deg"
                )
        titles.append(g.mangaid + truth)
    return galaxy_grid([g.image for g in galaxies], [g.spiral_votes for g in galaxies], titles, path)


def training_curves(
    history: Sequence[dict], path: str | os.PathLike[str], *, title: str = "", best_epoch: int | None = None
) -> Path:
    """The paper's Figure 3: loss and pixel accuracy against epoch, train and test."""
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, key, label in ((ax_loss, "loss", "loss"), (ax_acc, "accuracy", "pixel accuracy")):
        ax.plot(epochs, [h[f"train_{key}"] for h in history], "o-", ms=3, label="train")
        ax.plot(epochs, [h[f"test_{key}"] for h in history], "s-", ms=3, label="test")
        if best_epoch:
            ax.axvline(best_epoch, color="0.6", ls="--", lw=1, label=f"best epoch {best_epoch}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    ax_loss.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
