"""Why galseg resizes by hand: exact area averaging against the libraries' nearest offer.

525 -> 128 px (the GZ:3D size to the training size) is not a whole factor, so block means
(scikit-image's downscale_local_mean) do not apply; Pillow's BOX filter and scipy's zoom are
measured against the exact overlap-weighted mean, side by side, with their times.

    python benchmarks/bench_resize.py
"""

from __future__ import annotations

import time

import numpy as np
from PIL import Image
from scipy import ndimage

from galseg.dataset import area_average


def main() -> None:
    rng = np.random.default_rng(0)
    votes = rng.random((525, 525)) * 15
    start = time.perf_counter()
    exact = area_average(area_average(votes, 128, 0), 128, 1)
    ours = time.perf_counter() - start
    start = time.perf_counter()
    box = np.asarray(Image.fromarray(votes.astype(np.float32), mode="F").resize((128, 128), Image.BOX))
    pillow = time.perf_counter() - start
    start = time.perf_counter()
    zoomed = ndimage.zoom(votes, 128 / 525, order=1, grid_mode=True, mode="nearest")
    scipy_s = time.perf_counter() - start
    print("| method | max |difference| from exact area mean (counts) | ms |")
    print("| --- | ---: | ---: |")
    print(f"| galseg area_average (exact) | 0 | {1000 * ours:.1f} |")
    print(f"| Pillow BOX | {np.abs(box - exact).max():.2f} | {1000 * pillow:.1f} |")
    print(f"| scipy zoom, order 1 | {np.abs(zoomed - exact).max():.2f} | {1000 * scipy_s:.1f} |")


if __name__ == "__main__":
    main()
