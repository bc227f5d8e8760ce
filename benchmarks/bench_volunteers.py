"""Synthetic volunteers against the numbers aimed for (README, "Synthetic galaxies").

Reads a folder of synthetic GZ:3D files and prints, beside each target: the share of galaxies
with any arm pixel, with arms at three or more votes, how many volunteers draw arms on a spiral,
the peak vote count of armed galaxies, and the noise correlation of the images (neighbouring
pixels one and four apart), which real GZ:3D cutouts have from their 4x resampling.

    python benchmarks/bench_volunteers.py GZ3D_DIR [--limit 500]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from galseg.gz3d import find_gz3d_files, read_gz3d
from galseg.synthetic import ARMED_KINDS, truth_from_metadata


def noise_correlation(image: np.ndarray, lag: int) -> float:
    """Correlation of the image's sky (corner 60 x 60 px, smoothed light removed) at ``lag`` px."""
    sky = image[:60, :60].astype(np.float64).mean(axis=2)
    sky = sky - sky.mean()
    return float((sky[:, :-lag] * sky[:, lag:]).mean() / max(sky.var(), 1e-9))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", type=Path)
    parser.add_argument("--limit", type=int, default=500)
    args = parser.parse_args()
    galaxies = [read_gz3d(p) for p in find_gz3d_files(args.folder)[: args.limit]]
    truths = [truth_from_metadata(g.metadata) for g in galaxies]
    peak = np.array([g.spiral_votes.max() for g in galaxies])
    spirals = [g for g, t in zip(galaxies, truths, strict=True) if t.kind in ARMED_KINDS]
    drawers = np.array(
        [sum(1 for paths in g.spiral_outlines() if paths) / g.n_classifications for g in spirals]
    )
    lag1 = np.median([noise_correlation(g.image, 1) for g in galaxies])
    lag4 = np.median([noise_correlation(g.image, 4) for g in galaxies])
    rows = [
        ("galaxies with any arm pixel", "24% (GZ:3D: 7,193 of 29,813)", f"{100 * np.mean(peak > 0):.0f}%"),
        (
            "galaxies with arms at >= 3 votes",
            "<= 27% (paper: 73% both none)",
            f"{100 * np.mean(peak >= 3):.0f}%",
        ),
        (
            "volunteers drawing arms on a spiral (median)",
            "about half, widely spread",
            f"{100 * np.median(drawers):.0f}%",
        ),
        (
            "  ... 10th-90th percentile",
            "from a few to nearly all",
            "{:.0f}%-{:.0f}%".format(*(100 * np.percentile(drawers, [10, 90]))),
        ),
        ("peak vote count of armed galaxies (median)", "well below 15", f"{np.median(peak[peak > 0]):.0f}"),
        ("sky noise correlation, 1 px / 4 px", "high / low (4x resampled)", f"{lag1:.2f} / {lag4:.2f}"),
    ]
    print(f"{len(galaxies)} synthetic galaxies from {args.folder}\n")
    print("| measure | aimed for | generator |")
    print("| --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
