"""The network shipped with galseg, so an astronomer gets arm masks without training anything.

``galseg ready-model`` makes it with fixed seeds (synthetic galaxies -> prepare -> train ->
evaluate -> real-image check) and exports a slim copy into the package: the run record and the
best epoch's weights in float16 where float16 holds them (half the size; loaded back as float32),
no optimiser state.
``galseg predict IMAGE...`` without a run folder uses it, with the settings for real survey
cutouts (``inference.REAL_ZOOMS`` and the cut-off chosen for its weights, :func:`ready_cut`)
unless told otherwise.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from galseg import GalsegError
from galseg.io import atomic_path, atomic_write_json, plain_value, read_json
from galseg.train import RUN_FILE, load_checkpoint, read_run

READY_DIR = Path(__file__).with_name("ready_model")


def _staged(folder: Path, tag: str) -> Path:
    return folder.with_name(f".{folder.name}.{tag}")


def ready_run() -> Path:
    """The shipped run folder, or a one-line error saying how to make it. Where ``export_run`` was
    stopped between its two renames, the complete copy it left beside the folder is used."""
    for folder in (READY_DIR, _staged(READY_DIR, "new"), _staged(READY_DIR, "old")):
        if (folder / RUN_FILE).is_file():
            return folder
    raise GalsegError(
        f"{READY_DIR}: galseg's ready model is not installed; make it with `galseg ready-model` "
        "or give a run folder"
    )


def export_run(
    run: str | os.PathLike[str], out: str | os.PathLike[str], *, scores: dict | None = None
) -> Path:
    """A slim copy of ``run`` in ``out``: ``run.json`` (plus ``scores``) and each unit's best
    weights in float16 (where float16 holds them), with the model arguments needed to rebuild it.

    The copy is written beside ``out`` and swapped in by two renames, so a stop at any point
    leaves a complete model (the old or the new) that :func:`ready_run` finds."""
    run, out = Path(run), Path(out)
    record = read_run(run)
    final, out = out, _staged(out, "new")
    if out.exists():
        shutil.rmtree(out)
    for unit in record["units"]:
        model, checkpoint = load_checkpoint(run / unit / "best.pt")
        slim = {
            "model": {k: _slim(v) for k, v in model.state_dict().items()},
            "model_args": checkpoint["model_args"],
            "state": {k: checkpoint["state"][k] for k in ("epoch", "best_epoch", "best_loss")},
            "config": checkpoint["config"],
            "unit": unit,
            "thresholds": checkpoint["thresholds"],
            "environment": checkpoint["environment"],
        }
        with atomic_path(out / unit / "best.pt") as tmp:
            torch.save(slim, tmp)
    atomic_write_json(out / RUN_FILE, {**record, "scores": scores or {}})  # written last: complete
    old = _staged(final, "old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    out.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def _slim(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in float16 where float16 holds it, else as it is: a batch-norm running variance
    can pass float16's largest value (65,504; 1.3 million in one trained network), and an
    infinite variance silences every unit behind it."""
    if not tensor.is_floating_point():
        return tensor
    half = tensor.half()
    return half if bool(torch.isfinite(half).all()) or not bool(torch.isfinite(tensor).all()) else tensor


@dataclass(frozen=True)
class ReadyRecipe:
    """Everything that makes the ready model; change nothing here without re-measuring. The
    demo's galaxies, in the ``thick`` world (:data:`galseg.synthetic.WORLDS`), and its network,
    trained twice as long and with each image on its own scale (``normalise``): the recipe that
    met the real-image goal (docs/results.md, "The ready model").
    ``real_cut`` is the probability cut-off for real cutouts chosen for the weights it makes, on
    ``../shared/real`` after training (they choose, never train): the lowest at which smooth
    galaxies given arms stop falling."""

    n: int = 2000
    seed: int = 0
    size: int = 128
    preset: str = "small"
    epochs: int = 20
    batch_size: int = 16
    target: str = "both"  # arms and bar from one network
    normalise: bool = True
    recipe: str = "galseg"  # train.RECIPES (the model of galseg 0.1 was trained with "base")
    world: str = "thick"  # synthetic.WORLDS: thick bulges and brighter bars, since 0.2.7
    real_cut: float = 0.6


def build_ready_model(
    work: str | os.PathLike[str],
    *,
    real: str | os.PathLike[str] | None = None,
    recipe: ReadyRecipe = ReadyRecipe(),
    log=print,
) -> Path:
    """Synthesise, prepare, train, evaluate and check on real galaxies, then export into the package.

    Every stage resumes in ``work``. The real images (``real``, e.g. ``shared/real``) only check
    the result; they never choose anything here."""
    from galseg.dataset import prepare
    from galseg.io import progress
    from galseg.synthetic import WORLDS, write_synthetic
    from galseg.train import TrainConfig, train

    work = Path(work)
    log(f"== synthesise {recipe.n} galaxies (seed {recipe.seed})")
    made = write_synthetic(work / "gz3d", n=recipe.n, seed=recipe.seed, world=WORLDS[recipe.world])
    list(progress(made, total=recipe.n, desc="synth"))
    if not (work / "dataset" / "manifest.json").is_file():
        log("== prepare")
        prepare(
            work / "gz3d", work / "dataset", size=recipe.size, seed=recipe.seed, workers=os.cpu_count() or 1
        )
    run = work / "run"
    config = TrainConfig(
        dataset=str((work / "dataset").resolve()),
        out=str(run),
        preset=recipe.preset,
        head="multi",
        epochs=recipe.epochs,
        batch_size=recipe.batch_size,
        seed=recipe.seed,
        patience=recipe.epochs,
        target=recipe.target,
        normalise=recipe.normalise,
        recipe=recipe.recipe,
    )
    log("== train")
    train(config, resume=(run / RUN_FILE).exists(), log=log)
    # the scores are those of the weights shipped (float16), not of the training run's float32
    staged = export_run(run, work / "export")
    scores = score_ready_model(staged, recipe=recipe, real=real, log=log)
    out = export_run(staged, READY_DIR, scores=scores)
    log(f"ready model written to {out}")
    return out


def score_ready_model(
    run: str | os.PathLike[str],
    *,
    recipe: ReadyRecipe = ReadyRecipe(),
    dataset: str | os.PathLike[str] | None = None,
    real: str | os.PathLike[str] | None = None,
    log=print,
) -> dict:
    """The scores recorded with a ready model: its Table 1 on the synthetic test split of its
    dataset (or ``dataset``, prepared alike) and the real-image check at both cut-offs, at the
    zooms ``galseg predict`` uses it with."""
    from galseg.evaluate import evaluate_run

    run = Path(run)
    log("== evaluate")
    evaluation = evaluate_run(
        run, dataset=dataset, out=run / "evaluation", full_resolution=False, human=False
    )
    scores = {
        "recipe": asdict(recipe),
        "synthetic_table1": [
            {
                k: plain_value(row[k])
                for k in ("TH", "N_BOTH_ARMS", "JACCARD_MEAN", "PRECISION_MEAN", "POOLED_IOU")
            }
            for row in evaluation.table1
        ],
    }
    if real is not None and Path(real).is_dir():
        scores["real"] = real_scores(run, real, cut=recipe.real_cut, log=log)
    return scores


def real_scores(
    run: str | os.PathLike[str], real: str | os.PathLike[str], *, cut: float | None = None, log=print
) -> dict:
    """The real-image check of a ready model at 0.5 and at its real-image ``cut`` (by default
    ``inference.REAL_CUT``), at the zooms ``galseg predict`` uses it with, as recorded in its run
    record."""
    from galseg.inference import CUT, REAL_CUT, REAL_ZOOMS, load
    from galseg.metrics import real_markdown, real_summary
    from galseg.real import evaluate_real

    real_cut = REAL_CUT if cut is None else cut
    log(f"== real-image check (--zoom {','.join(map(str, REAL_ZOOMS))}, as galseg predict uses it)")
    checked = evaluate_real(load(run, device="cpu", zooms=REAL_ZOOMS), real, cuts=[CUT, real_cut])
    scores: dict = {"zooms": list(REAL_ZOOMS)}
    for c in (CUT, real_cut):
        summary = real_summary(checked[checked["CUT"] == c])
        scores[f"cut {c:g}"] = [{k: plain_value(row[k]) for k in summary.colnames} for row in summary]
        log(f"--cut {c:g}:\n{real_markdown(summary)}")
    return scores


def ready_cut() -> float:
    """The cut-off for real cutouts chosen for the shipped weights (their recipe's ``real_cut``);
    ``inference.REAL_CUT`` for a model recorded before the cut travelled with it."""
    from galseg.inference import REAL_CUT, check_cut

    return check_cut(float(ready_scores().get("recipe", {}).get("real_cut", REAL_CUT)))


def ready_scores() -> dict:
    """The synthetic and real scores recorded with the shipped model."""
    return read_json(ready_run() / RUN_FILE, what="the ready model's run record").get("scores", {})
