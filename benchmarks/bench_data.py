"""Data path: prepare throughput, DataLoader throughput with and without augmentation, and both
against the training step rate of each preset, measured side by side in one run.

The loader must never be the bottleneck: the ratio loader images/s / training images/s is what
to read (above 1: the network waits for nothing).

    python benchmarks/bench_data.py --n 200
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from galseg.dataset import ArmDataset, open_dataset, prepare
from galseg.synthetic import write_synthetic
from galseg.unet import build, preset_args

sys.path.insert(0, str(Path(__file__).parent))
from bench_model import measure  # noqa: E402


def loader_rate(dataset, *, augment: bool, workers: int, batch_size: int, seconds: float) -> float:
    data = ArmDataset(dataset, split="train", threshold=None, augment=augment)
    loader = torch.utils.data.DataLoader(
        data, batch_size=batch_size, shuffle=True, num_workers=workers, persistent_workers=workers > 0
    )
    images, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for image, _ in loader:
            images += image.shape[0]
            if time.perf_counter() - start >= seconds:
                break
    return images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("benchmarks/results/data"))
    parser.add_argument("--n", type=int, default=200, help="synthetic galaxies at the GZ:3D size")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()

    gz3d = args.work / "gz3d"
    list(write_synthetic(gz3d, n=args.n, seed=0))
    rows = {}
    for workers in (1, 2):
        out = args.work / f"dataset_w{workers}"
        if out.exists():
            import shutil

            shutil.rmtree(out)
        start = time.perf_counter()
        prepare(gz3d, out, size=args.size, workers=workers, show_progress=False)
        rows[f"prepare, {workers} process(es)"] = ("galaxies/s", args.n / (time.perf_counter() - start))
    dataset = open_dataset(args.work / "dataset_w2")
    size_on_disk = sum((dataset.folder / f).stat().st_size for f in ("images.npy", "spiral.npy", "bar.npy"))
    rows["dataset size on disk"] = ("kB/galaxy", size_on_disk / 1e3 / args.n)
    for augment in (False, True):
        for workers in (0, 2):
            rate = loader_rate(
                dataset, augment=augment, workers=workers, batch_size=args.batch_size, seconds=args.seconds
            )
            rows[f"DataLoader, augment {'on' if augment else 'off'}, {workers} workers"] = ("images/s", rate)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    x = torch.rand(args.batch_size, 3, args.size, args.size, device=device)
    for preset in ("small", "paper"):
        model = build(preset_args(preset)).to(device)
        rate = measure(
            model,
            x,
            train=True,
            autocast_dtype=torch.bfloat16 if device.type == "cuda" else None,
            no_grad_mode=torch.no_grad,
            seconds=args.seconds,
        )
        rows[f"training step, {preset} preset"] = ("images/s", rate)

    print(f"{args.n} synthetic galaxies (525 px) prepared at {args.size} px; device {device}")
    print("| measure | value | unit |\n| --- | ---: | --- |")
    for name, (unit, value) in rows.items():
        print(f"| {name} | {value:.1f} | {unit} |")
    slowest_loader = min(v for k, (u, v) in rows.items() if k.startswith("DataLoader, augment on"))
    for preset in ("small", "paper"):
        train_rate = rows[f"training step, {preset} preset"][1]
        print(f"loader (augmenting, slowest setting) / {preset} training: {slowest_loader / train_rate:.1f}x")
    (args.work / "bench_data.json").write_text(json.dumps({k: v for k, v in rows.items()}, indent=1))


if __name__ == "__main__":
    main()
