"""Training recipes side by side, judged on real galaxies as well as on synthetic ones.

A network can fit our synthetic galaxies better and real ones worse; this shows it per epoch.
Each recipe (``NAME:FIELD=VALUE,...`` over :class:`galseg.train.TrainConfig`; every recipe is a
multi-threshold network, 128 px, the dataset given) trains in its own process, recipes in
parallel, each stopped after ``--minutes`` (weights are written atomically after every epoch, so a
stopped recipe keeps its finished epochs). At epochs 1, 2, 3, 4, 6, 8, 11, 15, ... and at the epoch
the synthetic validation loss picks, the real check of ``bench_real.py`` runs on ``shared/real``
(never used for training) and a line goes to ``recipes.jsonl``. Prints, per recipe and epoch:
synthetic validation loss, and at th = 1 and 3 real arm recall / precision against SpArcFiRe and
the share of Galaxy Zoo spirals and of smooth galaxies given arms; draws ``recipes.png``.

    python benchmarks/bench_recipes.py --dataset D --out O --minutes 4 \\
        --recipe base:target=spiral --recipe seed1:target=spiral,seed=1 --recipe both:target=both
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECKED_EPOCHS = (1, 2, 3, 4, 6, 8, 11, 15, 20, 27, 35, 45, 60)
SHOWN_THRESHOLDS = (1, 3)


def parse_recipe(text: str) -> tuple[str, dict]:
    """``name:field=value,...`` -> (name, TrainConfig overrides typed like the field's default)."""
    from galseg.train import TrainConfig

    name, _, body = text.partition(":")
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    overrides: dict = {}
    for item in filter(None, body.split(",")):
        key, _, value = item.partition("=")
        if key not in fields or key in ("dataset", "out"):
            raise SystemExit(f"bench_recipes: recipe {name!r}: unknown setting {key!r}")
        kind = str(fields[key].type)  # the annotation's text: settings left None still have a type
        if kind.startswith("bool"):
            overrides[key] = value.lower() in ("1", "true", "yes")
        elif kind.startswith("float"):
            overrides[key] = float(value)
        elif kind.startswith("int"):
            overrides[key] = int(value)
        else:
            overrides[key] = value
    if not name.isidentifier():
        raise SystemExit(f"bench_recipes: recipe name {name!r}: letters, digits and _ only")
    return name, overrides


def train_one(args: argparse.Namespace, name: str, overrides: dict) -> None:
    """One recipe in this process: train, keeping each epoch's weights and checking it on real images."""
    from galseg.inference import load
    from galseg.metrics import real_summary
    from galseg.real import evaluate_real
    from galseg.train import TrainConfig, train

    out = args.out / name
    config = TrainConfig(
        **{
            "dataset": str(args.dataset),
            "out": str(out),
            "head": "multi",
            "epochs": args.epochs,
            "patience": args.epochs,
            "batch_size": 32,
            "device": args.device,
            **overrides,
        }
    )
    zooms = tuple(float(z) for z in args.zoom.split(","))
    log_path = args.out / "recipes.jsonl"

    def check(folder: Path, unit: str, state) -> None:
        epoch = state.epoch
        best = state.best_epoch == epoch
        if epoch not in CHECKED_EPOCHS and not best:
            return
        shutil.copyfile(folder / "last.pt", folder / f"epoch{epoch}.pt")
        predictor = load(out, device=args.device, checkpoint=f"epoch{epoch}", zooms=zooms)
        summary = real_summary(evaluate_real(predictor, args.real, measure=False))
        line = {
            "recipe": name,
            "epoch": epoch,
            "best_by_validation": best,
            "val_loss": state.history[-1]["eval_loss"],
            "train_loss": state.history[-1]["train_loss"],
            "real": {
                int(r["TH"]): {
                    k: float(r[k])
                    for k in ("RECALL", "PRECISION", "ARM_AUC", "SPIRALS_WITH_ARMS", "SMOOTH_WITH_ARMS")
                }
                for r in summary
            },
        }
        with open(log_path, "a") as fh:
            fh.write(json.dumps(line) + "\n")

    train(config, resume=(out / "run.json").exists(), on_epoch=check, log=lambda s: print(f"[{name}] {s}"))


def report(out: Path) -> None:
    """The table and figure from ``recipes.jsonl``."""
    lines = []
    for text in (out / "recipes.jsonl").read_text().splitlines():
        try:
            lines.append(json.loads(text))
        except json.JSONDecodeError:  # a line cut short when its recipe was stopped
            continue
    seen: dict = {}
    for line in lines:  # a best epoch that is also a checked one is written once per call
        seen[(line["recipe"], line["epoch"])] = line
    rows = sorted(seen.values(), key=lambda r: (r["recipe"], r["epoch"]))
    head = " | ".join(
        f"th={t} recall / precision / arm AUC | th={t} spirals / smooth with arms" for t in SHOWN_THRESHOLDS
    )
    print(f"| recipe | epoch | synthetic val loss | {head} |")
    print("| --- | ---: | ---: |" + " --- | --- |" * len(SHOWN_THRESHOLDS))
    last_best = {}
    for r in rows:
        if r["best_by_validation"]:
            last_best[r["recipe"]] = r["epoch"]
    for r in rows:
        mark = " (best val)" if last_best.get(r["recipe"]) == r["epoch"] else ""
        cells = []
        for t in SHOWN_THRESHOLDS:
            q = r["real"][str(t)]
            cells.append(f"{q['RECALL']:.2f} / {q['PRECISION']:.2f} / {q.get('ARM_AUC', float('nan')):.2f}")
            cells.append(f"{100 * q['SPIRALS_WITH_ARMS']:.0f}% / {100 * q['SMOOTH_WITH_ARMS']:.0f}%")
        print(f"| {r['recipe']} | {r['epoch']}{mark} | {r['val_loss']:.4f} | " + " | ".join(cells) + " |")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for recipe in sorted({r["recipe"] for r in rows}):
        mine = [r for r in rows if r["recipe"] == recipe]
        epochs = [r["epoch"] for r in mine]
        axes[0].plot(epochs, [r["val_loss"] for r in mine], "o-", label=recipe)
        axes[1].plot(epochs, [r["real"]["3"]["RECALL"] for r in mine], "o-", label=recipe)
        axes[2].plot(epochs, [r["real"]["3"]["SPIRALS_WITH_ARMS"] for r in mine], "o-", label=recipe)
    titles = (
        "synthetic validation loss",
        "real: th=3 arm recall vs SpArcFiRe",
        "real: th=3 spirals with arms",
    )
    for ax, title in zip(axes, titles, strict=True):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
    axes[1].set_ylim(0, 1)
    axes[2].set_ylim(0, 1)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "recipes.png", dpi=110)
    print(f"\nfigure: {out / 'recipes.png'}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", type=Path, required=True, help="a prepared synthetic dataset")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "recipes")
    parser.add_argument("--recipe", action="append", default=[], help="NAME:FIELD=VALUE,... (repeat)")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--minutes", type=float, default=10.0, help="wall-clock cap per recipe")
    parser.add_argument("--parallel", type=int, default=4, help="recipes trained at once")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--real", type=Path, default=ROOT.parent / "shared" / "real")
    parser.add_argument("--zoom", default="1,0.6", help="galseg predict --zoom for the real check")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # a worker: this recipe only
    args = parser.parse_args()
    recipes = dict(parse_recipe(text) for text in args.recipe or ["base:"])
    args.out.mkdir(parents=True, exist_ok=True)
    if args.one is not None:
        train_one(args, args.one, recipes[args.one])
        return
    waiting = list(recipes)
    running: dict[str, tuple[subprocess.Popen, float]] = {}
    forwarded = sys.argv[1:]
    while waiting or running:
        while waiting and len(running) < args.parallel:
            name = waiting.pop(0)
            command = [sys.executable, __file__, *forwarded, "--one", name]
            running[name] = (subprocess.Popen(command), time.monotonic())
        for name, (process, started) in list(running.items()):
            if process.poll() is not None:
                del running[name]
            elif time.monotonic() - started > 60 * args.minutes:
                process.terminate()  # its finished epochs are on disk
                process.wait()
                print(f"[{name}] stopped after {args.minutes} minutes")
                del running[name]
        time.sleep(1.0)
    if (args.out / "recipes.jsonl").is_file():
        report(args.out)
    else:
        print("no epoch finished")


if __name__ == "__main__":
    main()
