"""Prediction at survey scale: wall time and peak memory for 100, 1,000 and 10,000 images.

Each count runs `galseg predict` in a fresh process on PNG cutouts (rotations and flips of a few
synthetic galaxies), so peak resident memory is that process's alone. Cost should grow linearly
with the count (constant seconds per image) and memory should stay flat.

    python benchmarks/bench_scaling.py --counts 100,1000,10000
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np

from galseg.dataset import prepare
from galseg.gz3d import find_gz3d_files, read_gz3d
from galseg.synthetic import write_synthetic
from galseg.train import TrainConfig, train

# the command itself, then its own peak resident memory plus its reader process's
PEAK_REPORTING_PREDICT = """
import resource, sys
from galseg.cli import main
code = main(sys.argv[1:])
usage = resource.getrusage
peak = usage(resource.RUSAGE_SELF).ru_maxrss + usage(resource.RUSAGE_CHILDREN).ru_maxrss
print("PEAK_RSS_KB", peak, file=sys.stderr)
sys.exit(code)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("benchmarks/results/scaling"))
    parser.add_argument("--counts", default="100,1000,10000")
    parser.add_argument("--image-size", type=int, default=160, help="side of the PNG cutouts")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--size", type=int, default=128, help="the network's input size")
    args = parser.parse_args()

    gz3d = args.work / "gz3d"
    list(write_synthetic(gz3d, n=16, seed=3, size=args.image_size))
    run = args.work / "run"
    if not (run / "run.json").exists():  # the weights do not matter for speed: one step suffices
        prepare(gz3d, args.work / "dataset", size=args.size, show_progress=False)
        train(
            TrainConfig(
                dataset=str(args.work / "dataset"),
                out=str(run),
                preset=args.preset,
                head="multi",
                epochs=1,
                steps_per_epoch=1,
                batch_size=4,
            ),
            log=lambda line: None,
        )
    images = [read_gz3d(p).image for p in find_gz3d_files(gz3d)]
    counts = [int(c) for c in args.counts.split(",")]
    pngs = args.work / "pngs"
    pngs.mkdir(exist_ok=True)
    for i in range(max(counts)):
        path = pngs / f"cutout_{i:06d}.png"
        if not path.exists():
            mpimg.imsave(path, np.rot90(images[i % len(images)], i // len(images) % 4))
    all_pngs = sorted(pngs.glob("*.png"))
    rows = []
    for count in counts:
        listing = args.work / f"list_{count}.txt"
        listing.write_text("\n".join(str(p.resolve()) for p in all_pngs[:count]) + "\n")
        out = args.work / f"pred_{count}"
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                PEAK_REPORTING_PREDICT,
                "predict",
                str(run),
                str(listing),
                "--out",
                str(out),
                "--workers",
                "1",
                "--device",
                "cpu",
                "--no-arms",  # the network and files; arms add ~50 ms per mask, whatever the count
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - start
        peak_mb = float(result.stderr.rsplit("PEAK_RSS_KB", 1)[1].split()[0]) / 1024
        rows.append(
            {
                "images": count,
                "seconds": seconds,
                "images_per_s": count / seconds,
                "ms_per_image": 1000 * seconds / count,
                "peak_rss_mb": peak_mb,
            }
        )
        print(
            f"{count:6d} images: {seconds:7.1f} s, {1000 * seconds / count:6.1f} ms/image, "
            f"peak RSS {peak_mb:6.0f} MB",
            flush=True,
        )
    print("\n| images | wall s | ms/image | images/s | peak RSS MB |\n| ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['images']} | {r['seconds']:.1f} | {r['ms_per_image']:.1f} | {r['images_per_s']:.1f} | "
            f"{r['peak_rss_mb']:.0f} |"
        )
    (args.work / "bench_scaling.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
