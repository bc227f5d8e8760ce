"""The ``galseg`` command: argument parsing only; each subcommand calls one library function."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from galseg import GalsegError, __version__
from galseg.download import DEFAULT_BASE_URL


def _synth(args: argparse.Namespace) -> int:
    from galseg.plots import gz3d_preview
    from galseg.progress import progress
    from galseg.synthetic import write_synthetic

    paths = list(
        progress(
            write_synthetic(args.out, n=args.n, seed=args.seed, size=args.size, workers=args.workers),
            total=args.n,
            label="synth",
        )
    )
    if args.preview:
        gz3d_preview(paths[:16], Path(args.out) / "preview.png")
    print(f"{len(paths)} synthetic galaxies in {args.out}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from galseg.dataset import prepare

    manifest = prepare(
        args.gz3d_dir,
        args.out,
        size=args.size,
        test_fraction=args.test_fraction,
        seed=args.seed,
        workers=args.workers,
    )
    counts = manifest["counts"]
    print(
        f"{counts['prepared']} prepared, {counts['skipped']} skipped "
        f"({counts['train']} train, {counts['test']} test) in {args.out}"
    )
    return 0


def _download(args: argparse.Namespace) -> int:
    from galseg.download import download

    failures = download(args.out, base_url=args.base_url, limit=args.limit, workers=args.workers)
    for name, error in failures.items():
        print(f"galseg: failed: {name}: {error}", file=sys.stderr)
    print(
        f"download finished in {args.out}: {len(failures)} failed"
        + ("; rerun the same command to retry them" if failures else "")
    )
    return 1 if failures else 0


def _train(args: argparse.Namespace) -> int:
    from galseg.plots import figure_3_after_each_epoch
    from galseg.train import TrainConfig, parse_thresholds, train

    config = TrainConfig(
        dataset=str(args.dataset.resolve()),
        out=str(args.out),
        thresholds=parse_thresholds(args.thresholds),
        preset=args.preset,
        head=args.head,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        device=args.device,
        augment=args.augment,
        seed=args.seed,
        patience=args.patience,
        batch_norm=args.batch_norm,
        steps_per_epoch=args.steps_per_epoch,
    )

    train(
        config,
        resume=args.resume,
        on_epoch=figure_3_after_each_epoch(config.preset),
        log=lambda line: print(line, flush=True),
    )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from galseg.metrics import ceiling_markdown, evaluate_run, table1_markdown
    from galseg.plots import evaluation_figures

    out = args.out or Path(args.run) / "evaluation"
    evaluation = evaluate_run(
        args.run,
        dataset=args.dataset,
        out=out,
        full_resolution=args.full_resolution,
        tta=args.tta,
        ceiling=args.ceiling,
        n_boot=args.bootstrap,
        device=args.device,
        batch_size=args.batch_size,
    )
    evaluation_figures(evaluation, out, threshold=args.figure_threshold)
    print(table1_markdown(evaluation.table1, evaluation.intervals))
    if evaluation.ceiling is not None:
        print(ceiling_markdown(evaluation.ceiling))
    for row in evaluation.ece_table():
        print(f"ECE {row['VARIANT']} th={row['TH']}: {row['ECE']:.4f}")
    print(f"catalogues, tables and figures in {out}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from galseg.plots import prediction_overlay
    from galseg.predict import load, predict_files
    from galseg.train import parse_thresholds, start_runtime

    runtime = start_runtime(args.device)
    predictor = load(args.run, device=runtime.device)
    if args.thresholds:
        predictor = predictor.select(parse_thresholds(args.thresholds))
    catalogue = predict_files(
        predictor,
        args.inputs,
        args.out,
        catalogue=args.catalogue,
        batch_size=args.batch_size,
        workers=args.workers,
        overlay=prediction_overlay if args.overlay else None,
        tta=args.tta,
        measure_arms_too=args.arms,
    )
    if not runtime.main:
        return 0
    failed = sorted(set(catalogue["SOURCE"][catalogue["ERROR"] != ""]))
    for row in catalogue[catalogue["ERROR"] != ""]:
        print(f"galseg: failed: {row['ERROR']}", file=sys.stderr)
    print(
        f"{len(set(catalogue['ORDER'])) - len(failed)} images predicted, {len(failed)} failed; "
        f"catalogue {Path(args.out) / args.catalogue}"
    )
    return 1 if failed else 0


def _demo(args: argparse.Namespace) -> int:
    from galseg.demo import DemoSettings, run_demo

    overrides = {k: v for k, v in (("n", args.n), ("epochs", args.epochs)) if v is not None}
    if args.separate:
        overrides["head"] = "binary"
    settings = DemoSettings.quick(**overrides) if args.quick else DemoSettings(**overrides)
    run_demo(args.out, settings, log=lambda line: print(line, flush=True))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="galseg", description=__doc__)
    parser.add_argument("--version", action="version", version=f"galseg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="write synthetic galaxies as GZ:3D files")
    p.add_argument("--out", required=True, type=Path, help="folder for the .fits.gz files")
    p.add_argument("--n", type=int, default=100, help="number of galaxies")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=525, help="image side in pixels (GZ:3D: 525)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: every core)")
    p.add_argument(
        "--preview",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also plot the first 16 galaxies with their votes (preview.png)",
    )
    p.set_defaults(func=_synth)

    p = sub.add_parser("prepare", help="resize GZ:3D files once into a training-ready dataset folder")
    p.add_argument("gz3d_dir", type=Path, help="folder searched recursively for .fits / .fits.gz")
    p.add_argument("--out", required=True, type=Path, help="dataset folder")
    p.add_argument("--size", type=int, default=128, help="side in pixels, a multiple of 16")
    p.add_argument("--test-fraction", type=float, default=0.25)
    p.add_argument("--seed", type=int, default=0, help="seed of the train/test split")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes")
    p.set_defaults(func=_prepare)

    p = sub.add_parser("download", help="fetch the real GZ:3D files (SDSS DR17), resumable")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--limit", type=int, default=None, help="only the first N files of the listing")
    p.add_argument("--workers", type=int, default=8, help="parallel transfers")
    p.add_argument("--base-url", default=DEFAULT_BASE_URL)
    p.set_defaults(func=_download)

    p = sub.add_parser("train", help="train U-Nets on a prepared dataset (one per threshold, or one for all)")
    p.add_argument("dataset", type=Path, help="a folder made by galseg prepare")
    p.add_argument("--out", required=True, type=Path, help="run folder")
    p.add_argument("--thresholds", default="1-6", help="vote thresholds: 1-6, 3, or 1,3,5")
    p.add_argument("--preset", default="small", help="paper (34.5 M parameters), small (CPU) or tiny")
    p.add_argument(
        "--head",
        default="binary",
        choices=["binary", "multi"],
        help="binary: one 2-class net per threshold (the paper); multi: one net for all",
    )
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="random flips and quarter turns of each training image",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--patience", type=int, default=5, help="stop after this many epochs without a better test loss"
    )
    p.add_argument(
        "--batch-norm",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="batch normalisation after each convolution (default: the preset's; paper: off)",
    )
    p.add_argument("--steps-per-epoch", type=int, default=None, help="cap batches per epoch (quick runs)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.set_defaults(func=_train)

    p = sub.add_parser(
        "evaluate", help="the paper's per-galaxy metrics, Table 1 and figures on the test split"
    )
    p.add_argument("run", type=Path, help="a run folder made by galseg train")
    p.add_argument("--dataset", type=Path, default=None, help="dataset folder (default: the run's own)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: RUN/evaluation)")
    p.add_argument(
        "--full-resolution",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also score on the original vote maps, predictions upsampled",
    )
    p.add_argument("--figure-threshold", type=int, default=3, help="threshold of Figures 1 and 5")
    p.add_argument("--tta", action="store_true", help="also score test-time augmentation (8 orientations)")
    p.add_argument(
        "--ceiling",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="score volunteers and model against leave-one-out consensus (needs the GZ:3D files)",
    )
    p.add_argument("--bootstrap", type=int, default=1000, help="resamples for the 95%% intervals")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=32)
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("predict", help="arm masks and a catalogue for new images (GZ:3D, FITS, PNG, JPEG)")
    p.add_argument("run", type=Path, help="a run folder made by galseg train")
    p.add_argument("inputs", nargs="+", help="image files, folders, or text files listing paths")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--thresholds", default=None, help="a subset of the run's thresholds, e.g. 3 or 1,3,5")
    p.add_argument("--catalogue", default="catalogue.ecsv", help="file name; .ecsv, .csv, .fits or .parquet")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=2, help="processes reading inputs ahead of the network")
    p.add_argument("--device", default="auto")
    p.add_argument("--overlay", action="store_true", help="also write PNG overlays of the masks")
    p.add_argument(
        "--tta",
        action="store_true",
        help="average over the 8 flips/quarter turns; write their spread as an UNCERT HDU",
    )
    p.add_argument(
        "--arms",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure arm count, pitch angle and chirality at each threshold (arms.ecsv)",
    )
    p.set_defaults(func=_predict)

    p = sub.add_parser("demo", help="the whole study on synthetic galaxies, with an HTML report")
    p.add_argument("--out", type=Path, default=Path("demo-output"))
    p.add_argument(
        "--n", type=int, default=None, help="number of synthetic galaxies (default 2000; quick 160)"
    )
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--quick", action="store_true", help="a smoke test: under two minutes")
    p.add_argument(
        "--separate", action="store_true", help="six networks, one per threshold (the paper's way)"
    )
    p.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: user errors become one line on stderr and exit status 2."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except GalsegError as exc:
        print(f"galseg: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("galseg: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
