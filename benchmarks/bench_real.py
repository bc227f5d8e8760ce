"""Does a network trained on synthetic galaxies find arms in real ones? Real beside synthetic.

Runs a trained run (default: the model shipped with galseg) on the real SDSS and DECaLS cutouts
of ``shared/real`` (never used for training) and prints, per threshold: arm recall and precision
against SpArcFiRe's arm masks (a pixel matches within 3 network pixels), the share of Galaxy Zoo
spirals and of smooth galaxies given arms, and pitch and winding against SpArcFiRe; then the
run's synthetic Table 1 (if evaluated) beside it. Writes ``real_check.ecsv`` and a figure.

    python benchmarks/bench_real.py [--run RUN] [--real ../shared/real] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from astropy.table import Table

from galseg import GalsegError
from galseg.evaluate import evaluate_real, real_examples
from galseg.inference import load
from galseg.metrics import real_markdown, real_summary
from galseg.plots import real_galaxies_figure
from galseg.ready import ready_run

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, default=None, help="a run folder (default: galseg's ready model)")
    parser.add_argument("--real", type=Path, default=ROOT.parent / "shared" / "real")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    try:
        run = args.run or ready_run()
    except GalsegError as exc:
        raise SystemExit(f"galseg: error: {exc}") from None
    predictor = load(run, device="cpu")
    start = time.perf_counter()
    per_galaxy = evaluate_real(predictor, args.real)
    seconds = time.perf_counter() - start
    summary = real_summary(per_galaxy)
    args.out.mkdir(parents=True, exist_ok=True)
    per_galaxy.write(args.out / "real_check.ecsv", format="ascii.ecsv", overwrite=True)
    print(f"run {run}: {len(set(per_galaxy['NAME']))} real galaxies in {seconds:.1f} s\n")
    print("Real galaxies (shared/real):")
    print(real_markdown(summary))
    table1 = Path(run) / "evaluation" / "table1.ecsv"
    if table1.is_file():
        t = Table.read(table1)
        t = t[t["GRID"] == "train_size"]
        print("Synthetic test galaxies, same run (Table 1, training grid):")
        for row in t:
            print(
                f"  th={row['TH']}: Jaccard {row['JACCARD_MEAN']:.2f}, "
                f"precision {row['PRECISION_MEAN']:.2f}, pooled IoU {row['POOLED_IOU']:.3f} "
                f"over {row['N_BOTH_ARMS']} galaxies"
            )
    figure = real_galaxies_figure(**real_examples(predictor, args.real), path=args.out / "real_galaxies.png")
    print(f"\nfigure: {figure}")


if __name__ == "__main__":
    main()
