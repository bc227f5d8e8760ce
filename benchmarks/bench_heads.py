"""Six separate networks (the paper) against one multi-threshold network, augmentation on and off.

Same synthetic dataset, image size, preset, epochs and seed for all four runs. Per threshold:
test Jaccard (mean over galaxies where volunteers and model both mark arms, the paper's Table 1
selection) and galaxy-level detection F1; per run: total training time and the time to infer
all six levels for the test split.

    python benchmarks/bench_heads.py --n 1000 --size 64 --epochs 4
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from galseg.dataset import open_dataset, prepare
from galseg.evaluate import evaluate_run
from galseg.inference import load
from galseg.synthetic import write_synthetic
from galseg.train import TrainConfig, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("benchmarks/results/heads"))
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--galaxy-size", type=int, default=256, help="synthetic image side (GZ:3D: 525)")
    parser.add_argument("--size", type=int, default=64, help="training size")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    gz3d, dataset = args.work / "gz3d", args.work / "dataset"
    list(write_synthetic(gz3d, n=args.n, seed=args.seed, size=args.galaxy_size))
    if not (dataset / "manifest.json").exists():
        prepare(gz3d, dataset, size=args.size, seed=args.seed)
    n_test = len(open_dataset(dataset).indices("test"))
    results = {}
    for head in ("binary", "multi"):
        for augment in (True, False):
            name = (
                f"{'six separate' if head == 'binary' else 'one multi'}, augment {'on' if augment else 'off'}"
            )
            run = args.work / f"run_{head}_{'aug' if augment else 'noaug'}"
            config = TrainConfig(
                dataset=str(dataset),
                out=str(run),
                preset=args.preset,
                head=head,
                epochs=args.epochs,
                batch_size=args.batch_size,
                augment=augment,
                seed=args.seed,
                patience=args.epochs,
            )
            start = time.perf_counter()
            train(config, resume=(run / "run.json").exists(), log=lambda line: None)
            train_s = time.perf_counter() - start
            predictor = load(run, device="cpu")
            images = np.asarray(open_dataset(dataset).array("images")[open_dataset(dataset).indices("test")])
            start = time.perf_counter()
            predictor.probabilities(images, batch_size=32)
            infer_s = time.perf_counter() - start
            evaluation = evaluate_run(run, predictor=predictor, full_resolution=False, show_progress=False)
            table = evaluation.table1
            detection = evaluation.detection
            results[name] = {
                "train_s": train_s,
                "infer_s": infer_s,
                "n_test": n_test,
                "jaccard": {int(r["TH"]): float(r["JACCARD_MEAN"]) for r in table},
                "n_both": {int(r["TH"]): int(r["N_BOTH_ARMS"]) for r in table},
                "f1": {int(r["TH"]): float(r["F1"]) for r in detection},
            }
            print(
                f"{name}: trained in {train_s:.0f} s, six levels for {n_test} test images in {infer_s:.1f} s",
                flush=True,
            )

    print(
        f"\n{args.n} synthetic galaxies at {args.size} px, {args.preset} preset, {args.epochs} epochs, "
        f"seed {args.seed}; Jaccard = mean over test galaxies where both mark arms (count), F1 = detection"
    )
    header = "| run | " + " | ".join(f"th={th} Jaccard / F1" for th in range(1, 7)) + " | train s | infer s |"
    print(header)
    print("|" + " --- |" * (header.count("|") - 1))
    for name, r in results.items():
        cells = " | ".join(
            f"{r['jaccard'][th]:.2f} ({r['n_both'][th]}) / {r['f1'][th]:.2f}" for th in range(1, 7)
        )
        print(f"| {name} | {cells} | {r['train_s']:.0f} | {r['infer_s']:.1f} |")
    (args.work / "bench_heads.json").write_text(
        json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}, indent=1)
    )


if __name__ == "__main__":
    main()
