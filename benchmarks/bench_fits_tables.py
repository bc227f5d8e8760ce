"""Why galseg writes the GZ:3D binary tables itself: time per file, hand-written against astropy.

Both writers serialise the same six tables (HDUs 5-10) of the same synthetic galaxies; the
printed ratio is measured side by side in one run. The tests check that astropy and fitsio
(CFITSIO) read the hand-written tables back exactly.

    python benchmarks/bench_fits_tables.py --n 40
"""

from __future__ import annotations

import argparse
import io
import time

from astropy.io import fits

from galseg.gz3d import bintable_bytes
from galseg.synthetic import synthesize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=40, help="synthetic galaxies")
    parser.add_argument("--size", type=int, default=525)
    args = parser.parse_args()
    galaxies = [synthesize(i, seed=3, size=args.size)[0] for i in range(args.n)]
    tables = [
        (g.metadata, g.center_clusters, g.star_clusters, g.clicks, g.spiral_paths, g.bar_paths)
        for g in galaxies
    ]

    def hand(ts):
        return b"".join(bintable_bytes(t) for t in ts)

    def astropy_writer(ts):
        buffer = io.BytesIO()
        fits.HDUList([fits.PrimaryHDU(), *(fits.BinTableHDU(t) for t in ts)]).writeto(buffer)
        return buffer.getvalue()

    timings = {}
    for name, writer in (("hand-written", hand), ("astropy", astropy_writer)):
        writer(tables[0])  # warm up
        start = time.perf_counter()
        for ts in tables:
            writer(ts)
        timings[name] = (time.perf_counter() - start) / len(tables)
    for name, seconds in timings.items():
        print(f"{name:>13}: {1000 * seconds:.1f} ms per galaxy (six tables)")
    print(f"astropy / hand-written: {timings['astropy'] / timings['hand-written']:.1f}x")
    per_1000 = 1000 * (timings["astropy"] - timings["hand-written"])
    print(f"astropy would add {per_1000:.0f} s per 1,000 synthetic galaxies on one core")


if __name__ == "__main__":
    main()
