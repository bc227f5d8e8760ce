"""Does the network learn its task in the demo's budget? Recipes x seeds x precisions, side by side.

Each combination trains the demo's network (small preset, one multi-threshold net for arms and
bar, batch 16, ``--epochs`` epochs, the epoch kept chosen on validation galaxies) on the dataset
given (the demo's: ``galseg demo`` leaves it in ``demo-output/dataset``), in its own process, one
after another (``--parallel`` at once). After every epoch the validation galaxies give a learning
curve point: seconds of training so far against the mean Jaccard at th = 1 and 3. At the end the
kept epoch is evaluated on the test galaxies as the demo does: per threshold, the model against
volunteer panel B over panel A against panel B (the volunteers' own agreement, 1.0 = as good as
the volunteers), the model's mean Jaccard over the brighter-than-median baseline's, and the share
of barred test galaxies whose bar the bar head finds at th = 3, and the test galaxies without
arms at th = 3 that the model gives some.

    python benchmarks/bench_learning.py --dataset demo-output/dataset \\
        --recipe base:recipe=base --recipe galseg:recipe=galseg --seeds 0 1 2 \\
        --precisions auto float32

Recipes are ``NAME:FIELD=VALUE,...`` over :class:`galseg.train.TrainConfig` (as in
``bench_recipes.py``). Writes ``learning.jsonl`` (one line per epoch and one per finished run) and
``learning.png`` (the curves) in ``--out``; prints the table from every finished run there.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from bench_recipes import parse_recipe

ROOT = Path(__file__).resolve().parents[1]
CURVE_THRESHOLDS = (1, 3)


def _val_jaccard(run: Path, dataset) -> dict[int, float]:
    """Mean Jaccard per threshold over validation galaxies where the volunteers mark arms."""
    import numpy as np

    from galseg.inference import CUT, load
    from galseg.metrics import confusion, scores

    predictor = load(run, checkpoint="last").only("spiral")
    rows = dataset.indices("val")
    p = predictor.probabilities(np.asarray(dataset.array("images")[rows]), batch_size=32)
    votes = np.asarray(dataset.array("spiral")[rows])
    out = {}
    for k, th in enumerate(predictor.thresholds):
        truth = votes >= th
        has = truth.reshape(len(truth), -1).any(axis=1)
        j = scores(confusion(truth, p[:, k] > CUT))["jaccard"]
        out[int(th)] = float(np.mean(j[has])) if has.any() else float("nan")
    return out


def _cpu_name() -> str:
    """The CPU's model name (runs on different machines land in one table)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def run_one(args: argparse.Namespace, name: str, overrides: dict, seed: int, precision: str) -> None:
    """Train and score one (recipe, seed, precision) in this process; append its lines."""
    import numpy as np

    from galseg.dataset import open_dataset
    from galseg.demo import DemoSettings, baseline_comparison
    from galseg.evaluate import evaluate_run
    from galseg.train import TrainConfig, choose_precision, resolve_device, train

    demo = DemoSettings()
    tag = f"{name}-s{seed}-{precision}"
    out = args.out / tag
    dataset = open_dataset(args.dataset)
    config = TrainConfig(
        **{
            "dataset": str(Path(args.dataset).resolve()),
            "out": str(out),
            "preset": demo.preset,
            "head": "multi",
            "target": "both",
            "epochs": args.epochs,
            "batch_size": demo.batch_size,
            "patience": args.epochs,
            "seed": seed,
            "precision": precision,
            **overrides,
        }
    )
    log_path = args.out / "learning.jsonl"
    common = {"recipe": name, "seed": seed, "precision": precision, "tag": tag}
    runs_as = {"runs_as": choose_precision(precision, resolve_device("auto")), "cpu": _cpu_name()}

    def point(folder: Path, unit: str, state) -> None:
        seconds = sum(h["seconds"] for h in state.history)
        line = {
            **common,
            "epoch": state.epoch,
            "seconds": seconds,
            "val_loss": state.history[-1]["eval_loss"],
            "blew_up": state.history[-1].get("blew_up", False),
            "val_jaccard": _val_jaccard(out, dataset),
        }
        with open(log_path, "a") as fh:
            fh.write(json.dumps(line) + "\n")

    states = train(
        config, resume=(out / "run.json").exists(), on_epoch=point, log=lambda s: print(f"[{tag}] {s}")
    )
    state = states["multi"]
    arms = evaluate_run(out, show_progress=False, n_boot=200)
    bar = evaluate_run(
        out, show_progress=False, n_boot=200, structure="bar", human=False, full_resolution=False
    )
    human = {int(r["TH"]): r for r in arms.human_reference}
    final = {
        **common,
        **runs_as,
        "final": True,
        "best_epoch": state.best_epoch,
        "seconds": sum(h["seconds"] for h in state.history),
        "blow_ups": sum(bool(h.get("blew_up")) for h in state.history),
        "thresholds": {},
    }
    for th in arms.thresholds:
        base = baseline_comparison(Path(args.dataset), arms.per_galaxy, threshold=th)
        h = human[int(th)]
        final["thresholds"][int(th)] = {
            "human_jaccard": float(h["HUMAN_JACCARD"]),
            "model_jaccard_vs_b": float(h["MODEL_JACCARD"]),
            "of_volunteers": float(h["RATIO"]),
            "model_jaccard": float(base["model_jaccard"]),
            "baseline_jaccard": float(base["baseline_jaccard"]),
            "over_baseline": float(base["model_jaccard"] / base["baseline_jaccard"]),
        }
    det = {int(r["TH"]): r for r in bar.detection}[3]
    final["bar_found"] = float(det["RECALL"]) if np.isfinite(det["RECALL"]) else 0.0
    final["bar_false"] = int(det["FP"])
    final["bar_unbarred"] = int(det["FP"] + det["TN"])
    final["bar_auc"] = float(det["AUC"])  # barred above unbarred by the highest bar probability
    armless = {int(r["TH"]): r for r in arms.detection}[3]
    final["arms_false"] = int(armless["FP"])
    final["armless"] = int(armless["FP"] + armless["TN"])
    with open(log_path, "a") as fh:
        fh.write(json.dumps(final) + "\n")


def _read(out: Path) -> list[dict]:
    lines = []
    path = out / "learning.jsonl"
    for text in path.read_text().splitlines() if path.is_file() else []:
        try:
            lines.append(json.loads(text))
        except json.JSONDecodeError:  # a line cut short by a stopped run
            continue
    return lines


def report(out: Path) -> None:
    lines = _read(out)
    finals = {line["tag"]: line for line in lines if line.get("final")}
    if not finals:
        print("no run finished")
        return
    ths = sorted(int(t) for t in next(iter(finals.values()))["thresholds"])
    print("Of the volunteers: model vs panel B / panel A vs panel B (Jaccard), per threshold; x baseline:")
    print("model's mean Jaccard / brighter-than-median's; bar: barred test galaxies found at th = 3")
    print("(AUC: barred ranked above unbarred by each galaxy's highest bar probability; 0.5 is chance).\n")
    head = " | ".join(f"th={t}" for t in ths)
    print(
        f"| run | best epoch | minutes | blow-ups | of the volunteers {head} | x baseline {head} "
        "| bar found | armless given arms |"
    )
    print("| --- | ---: | ---: | ---: |" + " ---: |" * (2 * len(ths)) + " ---: | ---: |")
    for tag, f in sorted(finals.items()):
        t = f["thresholds"]
        ratio = " | ".join(f"{t[str(th)]['of_volunteers']:.2f}" for th in ths)
        base = " | ".join(f"{t[str(th)]['over_baseline']:.1f}" for th in ths)
        unbarred = f" of {f['bar_unbarred']}" if "bar_unbarred" in f else ""
        auc = f", AUC {f['bar_auc']:.2f}" if "bar_auc" in f else ""
        print(
            f"| {tag} ({f.get('runs_as', f['precision'])}) | {f['best_epoch']} | {f['seconds'] / 60:.1f} | "
            f"{f['blow_ups']} | {ratio} | {base} | "
            f"{f['bar_found']:.2f} ({f['bar_false']}{unbarred} unbarred given one{auc}) | "
            + (f"{f['arms_false']} of {f['armless']} |" if "armless" in f else "- |")
        )
    recipes = sorted({f["recipe"] for f in finals.values()})
    print("\nPer recipe, over its runs (seeds and precisions): th = 3 of the volunteers, mean [min - max]")
    for recipe in recipes:
        r = [f["thresholds"]["3"]["of_volunteers"] for f in finals.values() if f["recipe"] == recipe]
        mean = sum(r) / len(r)
        spread = f"+-{100 * (max(r) - min(r)) / 2 / mean:.0f}% of the mean" if mean > 0 else "no arms"
        print(f"- {recipe}: {mean:.2f} [{min(r):.2f} - {max(r):.2f}] over {len(r)} runs, {spread}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(CURVE_THRESHOLDS), figsize=(6 * len(CURVE_THRESHOLDS), 4))
    colours = {r: f"C{i}" for i, r in enumerate(recipes)}
    for tag in sorted({line["tag"] for line in lines if not line.get("final")}):
        mine = [line for line in lines if line["tag"] == tag and not line.get("final")]
        for ax, th in zip(axes, CURVE_THRESHOLDS, strict=True):
            ax.plot(
                [m["seconds"] / 60 for m in mine],
                [m["val_jaccard"][str(th)] for m in mine],
                "o-" if mine[0]["precision"] != "float32" else "s--",
                color=colours.get(mine[0]["recipe"], "k"),
                label=tag,
                ms=3,
            )
    for ax, th in zip(axes, CURVE_THRESHOLDS, strict=True):
        ax.set_title(f"validation galaxies, th = {th}", fontsize=10)
        ax.set_xlabel("training minutes")
        ax.set_ylabel("mean Jaccard")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "learning.png", dpi=110)
    print(f"\nfigure: {out / 'learning.png'}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", type=Path, required=False, help="the demo's prepared dataset")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "learning")
    parser.add_argument("--recipe", action="append", default=[], help="NAME:FIELD=VALUE,... (repeat)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--precisions", nargs="+", default=["auto"], help="auto, float32, bf16")
    parser.add_argument("--epochs", type=int, default=None, help="default: the demo's")
    parser.add_argument(
        "--parallel", type=int, default=1, help="runs at once (each takes the cores it finds)"
    )
    parser.add_argument("--report", action="store_true", help="only print the table of finished runs")
    parser.add_argument(
        "--one", nargs=3, default=None, help=argparse.SUPPRESS
    )  # a worker: name seed precision
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.report:
        report(args.out)
        return
    if args.dataset is None:
        parser.error("--dataset is required")
    if args.epochs is None:
        from galseg.demo import DemoSettings

        args.epochs = DemoSettings().epochs
    recipes = dict(parse_recipe(text) for text in args.recipe or ["base:recipe=base", "galseg:recipe=galseg"])
    if args.one is not None:
        name, seed, precision = args.one
        run_one(args, name, recipes[name], int(seed), precision)
        return
    done = {line["tag"] for line in _read(args.out) if line.get("final")}
    waiting = [
        (name, seed, precision)
        for name in recipes
        for seed in args.seeds
        for precision in args.precisions
        if f"{name}-s{seed}-{precision}" not in done
    ]
    running: list[subprocess.Popen] = []
    forwarded = [a for a in sys.argv[1:]]
    while waiting or running:
        while waiting and len(running) < args.parallel:
            name, seed, precision = waiting.pop(0)
            command = [sys.executable, __file__, *forwarded, "--one", name, str(seed), precision]
            running.append(subprocess.Popen(command))
        running = [p for p in running if p.poll() is None]
        time.sleep(1.0)
    report(args.out)


if __name__ == "__main__":
    main()
