"""bf16 against float32 for inference, measured side by side in one run on this machine.

On the test galaxies of a run's dataset: the share of mask pixels that change at each threshold,
the Table 1 Jaccard of each precision, and images/s of each. `galseg` picks bf16 by itself only
where the CPU has bf16 instructions (AVX512-BF16 or AMX) or on CUDA; elsewhere bf16 is emulated
and slow, but its masks can still be compared.

    python benchmarks/bench_precision.py --run RUN [--n 64]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from galseg.dataset import open_dataset
from galseg.inference import load
from galseg.metrics import confusion, scores
from galseg.train import native_bf16


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--n", type=int, default=64, help="test galaxies")
    args = parser.parse_args()
    float32 = load(args.run, device="cpu", precision="float32")
    bf16 = load(args.run, device="cpu", precision="bf16")
    data = open_dataset(float32.config["dataset"])
    rows = data.indices("test")[: args.n]
    images, votes = np.asarray(data.array("images")[rows]), np.asarray(data.array("spiral")[rows])
    results, rates = {}, {}
    for name, predictor in (("float32", float32), ("bf16", bf16)):
        predictor.probabilities(images[:4])  # warm up
        start = time.perf_counter()
        results[name] = predictor.probabilities(images, batch_size=16)
        rates[name] = len(images) / (time.perf_counter() - start)
    print(f"{len(images)} test galaxies; this CPU has native bf16: {native_bf16()}")
    print(
        f"float32 {rates['float32']:.1f} img/s, bf16 {rates['bf16']:.1f} img/s: bf16 / float32 = "
        f"{rates['bf16'] / rates['float32']:.2f}"
    )
    print("| th | mask pixels changed | Jaccard float32 | Jaccard bf16 |")
    print("| ---: | ---: | ---: | ---: |")
    for k, th in enumerate(float32.thresholds):
        a, b = results["float32"][:, k] > 0.5, results["bf16"][:, k] > 0.5
        truth = votes >= th
        both = truth.reshape(len(truth), -1).any(1)
        ja = scores(confusion(truth, a))["jaccard"][both]
        jb = scores(confusion(truth, b))["jaccard"][both]
        print(f"| {th} | {100 * np.mean(a != b):.3f}% | {np.nanmean(ja):.4f} | {np.nanmean(jb):.4f} |")


if __name__ == "__main__":
    main()
