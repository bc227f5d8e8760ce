"""Does a network trained on synthetic galaxies find arms in real ones? Real beside synthetic.

Runs a trained run (default: the model shipped with galseg) on the real SDSS and DECaLS cutouts
of ``shared/real`` (never used for training) and prints, per threshold: arm recall and precision
against SpArcFiRe's arm masks (a pixel matches within 3 network pixels), how well the
probabilities rank those arms above the disc between them (``ARM_AUC``), the share of Galaxy Zoo
spirals and of smooth galaxies given arms, and pitch and winding against SpArcFiRe; then the
run's synthetic Table 1 (if evaluated) beside it; once per zoom setting (``galseg predict
--zoom``) and probability cut-off (``galseg predict --cut``: 0.5 as trained, and
``inference.REAL_CUT`` for real images). Writes ``real_check_zoomZ_cutC.ecsv`` and a figure.

    python benchmarks/bench_real.py [--run RUN] [--real ../shared/real] [--zooms 1 1,0.6] [--cuts 0.5 0.2]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from astropy.table import Table

from galseg import GalsegError
from galseg.evaluate import evaluate_real, real_examples
from galseg.inference import CUT, REAL_CUT, check_cut, load
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
    parser.add_argument(
        "--zooms",
        nargs="+",
        default=["1", "1,0.6"],
        help="zoom settings compared side by side (galseg predict --zoom): the image as given, and "
        "with its middle 60%% predicted larger too",
    )
    parser.add_argument(
        "--cuts",
        nargs="+",
        type=float,
        default=[CUT, REAL_CUT],
        help="probability cut-offs compared side by side (galseg predict --cut)",
    )
    args = parser.parse_args()
    try:
        run = args.run or ready_run()
        cuts = [check_cut(c) for c in args.cuts]
    except GalsegError as exc:
        raise SystemExit(f"galseg: error: {exc}") from None
    print(f"run {run}")
    args.out.mkdir(parents=True, exist_ok=True)
    for setting in args.zooms:
        predictor = load(run, device="cpu", zooms=tuple(float(z) for z in setting.split(",")))
        start = time.perf_counter()
        checked = evaluate_real(predictor, args.real, cuts=cuts)  # one prediction, every cut-off
        seconds = time.perf_counter() - start
        count = len(set(checked["NAME"]))
        print(f"\nReal galaxies (shared/real), --zoom {setting}: {count} in {seconds:.1f} s")
        for cut in cuts:
            per_galaxy = checked[checked["CUT"] == cut]
            name = f"real_check_zoom{setting}_cut{cut:g}.ecsv"
            per_galaxy.write(args.out / name, format="ascii.ecsv", overwrite=True)
            print(f"\n--zoom {setting} --cut {cut:g}")
            print(real_markdown(real_summary(per_galaxy)))
    predictor = replace(predictor, cut=cuts[-1])
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
    print(f"(the figure shows --zoom {args.zooms[-1]} --cut {cuts[-1]:g})")
    print(f"\nfigure: {figure}")


if __name__ == "__main__":
    main()
