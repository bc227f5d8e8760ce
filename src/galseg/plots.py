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
    images
        (H, W, 3) uint8 arrays.
    votes
        (H, W) vote-count arrays on the same grid.
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


def figure_3_after_each_epoch(preset: str):
    """An ``on_epoch`` callback for :func:`galseg.train.train` that redraws a unit's Figure 3."""

    def draw(folder: Path, name: str, state) -> None:
        training_curves(
            state.history,
            folder / "curves.png",
            title=f"{name} ({preset} preset)",
            best_epoch=state.best_epoch,
        )

    return draw


def training_curves(
    history: Sequence[dict], path: str | os.PathLike[str], *, title: str = "", best_epoch: int | None = None
) -> Path:
    """The paper's Figure 3: loss and pixel accuracy against epoch, on the training split and on
    the split that chooses the epoch (validation, or test as the paper did)."""
    epochs = [h["epoch"] for h in history]
    watched = {"val": "validation"}.get(history[-1].get("eval_split", "val"), history[-1].get("eval_split"))
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, key, label in ((ax_loss, "loss", "loss"), (ax_acc, "accuracy", "pixel accuracy")):
        ax.plot(epochs, [h[f"train_{key}"] for h in history], "o-", ms=3, label="train")
        ax.plot(epochs, [h[f"eval_{key}"] for h in history], "s-", ms=3, label=watched)
        if best_epoch:
            ax.axvline(best_epoch, color="0.6", ls="--", lw=1, label=f"best epoch {best_epoch}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    ax_loss.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def metric_histograms(
    per_galaxy, threshold: int, path: str | os.PathLike[str], *, grid: str = "train_size", noun: str = "arm"
) -> Path:
    """The paper's Figure 5: accuracy, precision and Jaccard per galaxy at one threshold, over the
    galaxies where both the volunteers and the model mark arms (the Table 1 selection)."""
    sel = (per_galaxy["GRID"] == grid) & (per_galaxy["TH"] == threshold)
    t = per_galaxy[sel]
    t = t[t["HAS_ARM_TRUTH"] & t["HAS_ARM_PRED"]]
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.0), sharey=True)
    for ax, name in zip(axes, ("ACCURACY", "PRECISION", "JACCARD"), strict=True):
        values = np.asarray(t[name], dtype=float)
        ax.hist(values, bins=np.linspace(0, 1, 21), color="#4c72b0", edgecolor="white")
        if values.size:
            ax.axvline(np.mean(values), color="#c44e52", lw=1.5, label=f"mean {np.mean(values):.2f}")
            ax.legend(fontsize=8, loc="upper left")
        ax.set_xlabel(name.lower())
        ax.set_xlim(0, 1)
    axes[0].set_ylabel("galaxies")
    fig.suptitle(
        f"th = {threshold}: {len(t)} test galaxies where volunteers and model both mark {noun}s", fontsize=10
    )
    fig.tight_layout()
    return _save(fig, path)


def thresholds_example(
    image: np.ndarray,
    votes: np.ndarray,
    probabilities: np.ndarray,
    thresholds: Sequence[int],
    path: str | os.PathLike[str],
    *,
    title: str = "",
) -> Path:
    """The paper's Figure 4: one galaxy, then for each threshold the volunteers' mask (top)
    beside the model's (bottom)."""
    n = len(thresholds)
    fig, axes = plt.subplots(2, n + 1, figsize=(1.9 * (n + 1), 4.0), squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].imshow(image, origin="upper")
    axes[0, 0].set_title(title or "image", fontsize=8)
    axes[1, 0].imshow(votes, origin="upper", cmap=ARM_CMAP, vmin=0, vmax=max(15, int(votes.max())))
    axes[1, 0].set_title("vote counts", fontsize=8)
    for k, th in enumerate(thresholds):
        axes[0, k + 1].imshow(votes >= th, origin="upper", cmap="gray", vmin=0, vmax=1)
        axes[0, k + 1].set_title(f"volunteers, th={th}", fontsize=8)
        axes[1, k + 1].imshow(probabilities[k] > 0.5, origin="upper", cmap="gray", vmin=0, vmax=1)
        axes[1, k + 1].set_title(f"model, th={th}", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def votes_figure(
    image: np.ndarray,
    votes: np.ndarray,
    threshold: int,
    path: str | os.PathLike[str],
    *,
    title: str = "",
    noun: str = "spiral-arm",
) -> Path:
    """The paper's Figure 1: image, vote counts with a colour bar, votes >= th, and the binary mask."""
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.2))
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].imshow(image, origin="upper")
    axes[0].set_title(title or "image", fontsize=9)
    shown = axes[1].imshow(votes, origin="upper", cmap=ARM_CMAP, vmin=0, vmax=max(15, int(votes.max())))
    fig.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.04, label="volunteers")
    axes[1].set_title(f"{noun} vote counts", fontsize=9)
    kept = np.where(votes >= threshold, votes, 0)
    shown = axes[2].imshow(kept, origin="upper", cmap=ARM_CMAP, vmin=0, vmax=max(15, int(votes.max())))
    fig.colorbar(shown, ax=axes[2], fraction=0.046, pad=0.04)
    axes[2].set_title(f"votes >= {threshold}", fontsize=9)
    axes[3].imshow(votes >= threshold, origin="upper", cmap="gray", vmin=0, vmax=1)
    axes[3].set_title(f"binary mask, th = {threshold}", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def detection_bars(detection, path: str | os.PathLike[str], *, noun: str = "arm") -> Path:
    """Galaxy-level detection precision, recall and F1 against the threshold."""
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    th = np.asarray(detection["TH"])
    for offset, name in zip((-0.25, 0, 0.25), ("PRECISION", "RECALL", "F1"), strict=True):
        ax.bar(
            th + offset,
            np.nan_to_num(np.asarray(detection[name], dtype=float)),
            width=0.25,
            label=name.lower(),
        )
    ax.set_xlabel("vote threshold th")
    ax.set_ylabel(f"galaxies with {noun}s: score")
    ax.set_ylim(0, 1.05)
    ax.set_xticks(th)
    ax.legend(fontsize=8, ncol=3, loc="lower center")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def _reliability_curve(ax, reliability, variant: str, label: str, **style) -> None:
    """One reliability curve: solid for plain predictions, dashed for test-time augmented ones."""
    used = reliability.count > 0
    ax.plot(
        reliability.confidence[used],
        reliability.frequency[used],
        "o-" if variant == "plain" else "s--",
        ms=3,
        label=f"{label}: ECE {reliability.ece:.3f}",
        **style,
    )


def reliability_diagram(evaluation, path: str | os.PathLike[str]) -> Path:
    """Observed frequency of votes >= th against the predicted P(votes >= th), per threshold (solid:
    plain, dashed: test-time augmented), and the expected vote fraction where all six exist."""
    panels = 2 if evaluation.vote_fraction else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.6), squeeze=False)
    ax = axes[0, 0]
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls=":")
    for variant, by_th in evaluation.calibration.items():
        for th, r in by_th.items():
            _reliability_curve(ax, r, variant, f"th={th} {variant}", color=THRESHOLD_COLOURS[(th - 1) % 6])
    ax.set_xlabel("predicted P(votes >= th)")
    ax.set_ylabel("observed frequency")
    ax.set_title("reliability, test pixels", fontsize=10)
    ax.legend(fontsize=6, ncol=2)
    if panels == 2:
        ax = axes[0, 1]
        ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls=":")
        for variant, r in evaluation.vote_fraction.items():
            _reliability_curve(ax, r, variant, variant)
        ax.set_xlabel("predicted sum of P(votes >= th) / 6")
        ax.set_ylabel("observed min(votes, 6) / 6")
        ax.set_title("vote fraction", fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def evaluation_figures(evaluation, out: str | os.PathLike[str], *, threshold: int = 3) -> list[Path]:
    """Figures 1, 4 and 5 of the paper and the detection summary, from an ``Evaluation``."""
    out = Path(out)
    th = threshold if threshold in evaluation.thresholds else evaluation.thresholds[0]
    e, name = evaluation, evaluation.example_mangaid
    noun = "bar" if evaluation.structure == "bar" else "arm"
    return [
        votes_figure(
            e.example_image,
            e.example_votes,
            th,
            out / "figure1_votes.png",
            title=name,
            noun="bar" if noun == "bar" else "spiral-arm",
        ),
        thresholds_example(
            e.example_image,
            e.example_votes,
            e.example_probabilities,
            e.thresholds,
            out / "figure4_thresholds.png",
            title=name,
        ),
        metric_histograms(e.per_galaxy, th, out / f"figure5_histograms_th{th}.png", noun=noun),
        detection_bars(e.detection, out / "detection.png", noun=noun),
        reliability_diagram(e, out / "reliability.png"),
    ]


THRESHOLD_COLOURS = ("#ffe066", "#ffa94d", "#ff6b6b", "#f06595", "#cc5de8", "#5c7cfa")


def prediction_overlay(
    source,
    probabilities: np.ndarray,
    thresholds: Sequence[int],
    path: str | os.PathLike[str],
    *,
    arms: dict | None = None,
    geometry=None,
    bar: np.ndarray | None = None,
    cut: float,
) -> Path:
    """The input image with the outline of the predicted arms (probability above ``cut``) at each
    threshold and, when measured, the fitted log spirals at th=3 (or the lowest threshold); the
    arm probability beside it.
    ``source`` is a ``inputs.InputImage``; ``arms`` maps threshold to (arms, summary); ``bar``:
    the bar planes of a run that segments bars too (outlined in white at th=3 or the lowest)."""
    from galseg.arms import spiral_curve

    fig, (ax_img, ax_p) = plt.subplots(1, 2, figsize=(8, 4.1))
    ax_img.imshow(source.image, origin="upper")
    for k, th in enumerate(thresholds):
        if probabilities[k].max() > cut:
            ax_img.contour(
                probabilities[k], levels=[cut], colors=[THRESHOLD_COLOURS[(th - 1) % 6]], linewidths=0.9
            )
        ax_img.plot([], [], color=THRESHOLD_COLOURS[(th - 1) % 6], label=f"th={th}")
    if bar is not None and bar is not probabilities:
        k = list(thresholds).index(3) if 3 in thresholds else 0
        if bar[k].max() > cut:
            ax_img.contour(bar[k], levels=[cut], colors=["white"], linewidths=1.2, linestyles="--")
        ax_img.plot([], [], color="white", ls="--", label=f"bar th={thresholds[k]}")
    title = source.name
    if arms and geometry is not None:
        th = 3 if 3 in arms else min(arms)
        found, summary = arms[th]
        for arm in found:
            xy = spiral_curve(arm, geometry)
            ax_img.plot(xy[:, 0], xy[:, 1], color="cyan", lw=1.2, ls="--")
        if found:
            title += (
                f": {summary.n_arms} arm segment{'s' if summary.n_arms != 1 else ''}, "
                f"pitch {summary.pitch_deg:.0f}°, {summary.chirality}-wise (th={th})"
            )
        ax_img.set_xlim(0, source.image.shape[1] - 1)
        ax_img.set_ylim(source.image.shape[0] - 1, 0)
    ax_img.legend(fontsize=7, loc="lower right", ncol=2, title=f"P > {cut:g}", title_fontsize=7)
    ax_img.set_title(title, fontsize=8)
    shown = ax_p.imshow(probabilities[0], origin="upper", cmap="viridis", vmin=0, vmax=1)
    fig.colorbar(shown, ax=ax_p, fraction=0.046, pad=0.04)
    ax_p.set_title(f"P(votes >= {thresholds[0]})", fontsize=9)
    for ax in (ax_img, ax_p):
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return _save(fig, path)


def real_galaxies_figure(
    images: Sequence[np.ndarray],
    probabilities: Sequence[np.ndarray],
    references: Sequence[np.ndarray | None],
    titles: Sequence[str],
    path: str | os.PathLike[str],
    *,
    cut: float,
    columns: int = 4,
) -> Path:
    """Real cutouts with the predicted arms (th = 1 and 3 outlines at ``cut``, ``probabilities``
    (2, H, W)) and, where there is one, SpArcFiRe's arm mask as a dotted outline."""
    n = len(images)
    rows = int(np.ceil(n / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.75 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for i, (image, p, reference, title) in enumerate(
        zip(images, probabilities, references, titles, strict=True)
    ):
        ax = axes[i // columns, i % columns]
        ax.imshow(image, origin="upper")
        for plane, colour in zip(p, ("#ffd54f", "#ff1744"), strict=False):
            if plane.max() > cut:
                ax.contour(plane, levels=[cut], colors=[colour], linewidths=0.8)
        if reference is not None and reference.any():
            ax.contour(
                reference.astype(float), levels=[0.5], colors=["#00e5ff"], linewidths=0.6, linestyles=":"
            )
        ax.set_title(title, fontsize=7)
    fig.suptitle(
        f"real galaxies: yellow th=1, red th=3 (P > {cut:g}), dotted cyan SpArcFiRe's arms", fontsize=9
    )
    fig.tight_layout()
    return _save(fig, path)


def real_maps_figure(
    images: Sequence[np.ndarray],
    references: Sequence[np.ndarray],
    maps: dict[str, Sequence[np.ndarray]],
    titles: Sequence[str],
    path: str | os.PathLike[str],
) -> Path:
    """One row per real cutout: the image with SpArcFiRe's arms (dotted cyan), then each run's
    probability map (``maps``: label -> one (H, W) map per cutout) with the same arms over it.
    Blobs over the inner disc and ridges along the arms look different here whatever the cut."""
    columns = 1 + len(maps)
    fig, axes = plt.subplots(len(images), columns, figsize=(2.3 * columns, 2.3 * len(images)), squeeze=False)
    for i, (image, reference, title) in enumerate(zip(images, references, titles, strict=True)):
        panels = [(image, title, None)] + [(m[i], label, "magma") for label, m in maps.items()]
        for ax, (shown, label, cmap) in zip(axes[i], panels, strict=True):
            ax.imshow(shown, origin="upper", cmap=cmap, vmin=0 if cmap else None, vmax=1 if cmap else None)
            ax.contour(
                reference.astype(float), levels=[0.5], colors=["#00e5ff"], linewidths=0.5, linestyles=":"
            )
            ax.set_title(label, fontsize=7)
            ax.set_axis_off()
    fig.suptitle(
        "real spirals: P(votes >= 3) of each run (0 black, 1 white), dotted cyan SpArcFiRe's arms", fontsize=8
    )
    fig.tight_layout()
    return _save(fig, path)


def gz3d_check_figure(
    galaxies: Sequence,
    planes: Sequence[dict[str, np.ndarray]],
    thresholds: Sequence[int],
    path: str | os.PathLike[str],
    *,
    cut: float,
    title: str,
) -> Path:
    """Real GZ:3D files, one row each: the image the volunteers saw (hexagon and all), their arm
    votes (HDU 3), and the network's arms at th = 1 and 3 and its bar at th = 3 (P > ``cut``)."""
    fig, axes = plt.subplots(len(galaxies), 3, figsize=(9, 3.1 * len(galaxies)), squeeze=False)
    for row, galaxy, p in zip(axes, galaxies, planes, strict=True):
        for ax in row:
            ax.set_axis_off()
        row[0].imshow(galaxy.image, origin="upper")
        row[0].set_title(f"{galaxy.mangaid}: as drawn on", fontsize=8)
        row[1].imshow(galaxy.spiral_votes, origin="upper", cmap="magma", vmin=0, vmax=15)
        if galaxy.bar_votes.max() > 0:
            row[1].contour(galaxy.bar_votes, levels=[0.5], colors=["#00e5ff"], linewidths=0.8)
        row[1].set_title("volunteers: arm votes (bar outline cyan)", fontsize=8)
        row[2].imshow(galaxy.image, origin="upper")
        for th, colour in ((1, "#ffd54f"), (3, "#ff1744")):
            if th in thresholds and "spiral" in p and p["spiral"][thresholds.index(th)].max() > cut:
                row[2].contour(
                    p["spiral"][thresholds.index(th)], levels=[cut], colors=[colour], linewidths=0.9
                )
        if 3 in thresholds and "bar" in p and p["bar"][thresholds.index(3)].max() > cut:
            row[2].contour(p["bar"][thresholds.index(3)], levels=[cut], colors=["#00e5ff"], linewidths=0.9)
        row[2].set_title("network: arms th=1 yellow, th=3 red; bar th=3 cyan", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)
