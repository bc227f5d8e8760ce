"""The survey path end to end: galaxies per second of `galseg predict`, stage by stage, beside the
network alone, measured in one run on this machine.

Stages, timed one galaxy at a time on a sample: read (file to 8-bit RGB), resize (to the
network's size), network (per image, in batches), upsample (six probability maps to the input
grid), statistics and arms (all thresholds), write (FITS, gzip). Then `predict_files` end to
end on every file (reading in loader workers, post-processing in a pool, overlapping the
network), and the network alone on the same number of images.

    python benchmarks/bench_predict.py --run RUN [--n 1000] [--kind gz3d|png] [--workers 2] [--compile]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from galseg import GalsegError
from galseg.dataset import resize_image
from galseg.footprint import footprint
from galseg.inference import load, upsample
from galseg.inputs import read_input
from galseg.io import gzip_bytes
from galseg.measure import galaxy_statistics
from galseg.outputs import arms_table, mask_file_bytes
from galseg.predict import predict_files
from galseg.ready import ready_run
from galseg.synthetic import write_synthetic


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, default=None, help="a run folder (default: the ready model)")
    parser.add_argument("--n", type=int, default=1000, help="input files")
    parser.add_argument("--kind", choices=["gz3d", "png"], default="gz3d")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile against eager")
    parser.add_argument("--sample", type=int, default=40, help="galaxies timed stage by stage")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "galseg-bench-predict")
    args = parser.parse_args()
    try:
        predictor = load(args.run or ready_run(), device="cpu")
    except GalsegError as exc:
        raise SystemExit(f"galseg: error: {exc}") from None
    gz3d = args.work / "gz3d"
    files = sorted(write_synthetic(gz3d, n=args.n, seed=9))
    if args.kind == "png":
        pngs = args.work / "png"
        pngs.mkdir(parents=True, exist_ok=True)
        for path in files:
            target = pngs / (path.name.split("_")[0] + ".png")
            if not target.exists():
                Image.fromarray(read_input(path).image).save(target)
        files = sorted(pngs.glob("*.png"))

    stages = dict.fromkeys(
        ("read", "resize", "network", "upsample", "statistics, arms and bar", "write"), 0.0
    )
    sample = files[: args.sample]
    items = []
    for path in sample:
        start = time.perf_counter()
        item = read_input(path)
        stages["read"] += time.perf_counter() - start
        start = time.perf_counter()
        small = resize_image(item.image, predictor.size)
        galaxy = footprint(item.image)
        stages["resize"] += time.perf_counter() - start
        items.append((item, small, galaxy))
    start = time.perf_counter()
    probabilities = predictor.probabilities(np.stack([s for _, s, _ in items]), batch_size=16)
    stages["network"] += time.perf_counter() - start
    for (item, _, galaxy), p in zip(items, probabilities, strict=True):
        start = time.perf_counter()
        planes = predictor.split(upsample(p, item.image.shape[:2]))
        stages["upsample"] += time.perf_counter() - start
        start = time.perf_counter()
        stats, geometry, arms = galaxy_statistics(item, planes, predictor.thresholds, galaxy)
        stages["statistics, arms and bar"] += time.perf_counter() - start
        start = time.perf_counter()
        data = mask_file_bytes(
            planes,
            predictor.thresholds,
            item.wcs,
            stats,
            {"NAME": item.name},
            arms=arms_table(arms),
            geometry=geometry,
        )
        gzip_bytes(data)
        stages["write"] += time.perf_counter() - start
    total = sum(stages.values())
    print(f"{args.kind} inputs, {len(sample)} timed stage by stage (one process):")
    print("| stage | ms per galaxy | share |")
    print("| --- | ---: | ---: |")
    for name, seconds in stages.items():
        print(f"| {name} | {1000 * seconds / len(sample):.1f} | {100 * seconds / total:.0f}% |")

    out = args.work / f"out-{args.kind}"
    shutil.rmtree(out, ignore_errors=True)  # a rerun would skip the finished galaxies
    start = time.perf_counter()
    predict_files(predictor, files, out, workers=args.workers, show_progress=False)
    end_to_end = len(files) / (time.perf_counter() - start)
    images = np.random.default_rng(0).integers(
        0, 256, (len(files), predictor.size, predictor.size, 3), np.uint8
    )
    start = time.perf_counter()
    predictor.probabilities(images, batch_size=16)
    network = len(files) / (time.perf_counter() - start)
    print(f"\n{len(files)} files, --workers {args.workers}:")
    print(f"  galseg predict end to end, with arms: {end_to_end:.1f} galaxies/s")
    print(f"  network alone, same images:           {network:.1f} images/s")
    print(f"  end to end / network: {end_to_end / network:.2f}")
    if args.compile:
        compiled = load(args.run or ready_run(), device="cpu", compile=True)
        start = time.perf_counter()
        compiled.probabilities(images[:16], batch_size=16)  # compiles
        compile_seconds = time.perf_counter() - start
        start = time.perf_counter()
        p_compiled = compiled.probabilities(images, batch_size=16)
        rate = len(files) / (time.perf_counter() - start)
        start = time.perf_counter()
        p_eager = predictor.probabilities(images, batch_size=16)
        eager = len(files) / (time.perf_counter() - start)
        changed = float(np.mean((p_compiled > 0.5) != (p_eager > 0.5)))
        print("\ntorch.compile (inference), same images, eager measured again after it:")
        print(
            f"  compiling: {compile_seconds:.0f} s once; then {rate:.1f} images/s against eager {eager:.1f}"
        )
        print(f"  compiled / eager: {rate / eager:.2f}; mask pixels that differ: {changed:.2e}")


if __name__ == "__main__":
    main()
