"""The ``galseg`` command: argument parsing only; each subcommand calls one library function."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from galseg import HEXAGON_MODES, TARGETS, WORLD_NAMES, GalsegError, __version__
from galseg.download import DEFAULT_BASE_URL
from galseg.io import writable_folder


def _synth(args: argparse.Namespace) -> int:
    from galseg.io import progress
    from galseg.plots import gz3d_preview
    from galseg.synthetic import WORLDS, write_synthetic

    paths = list(
        progress(
            write_synthetic(
                args.out,
                n=args.n,
                seed=args.seed,
                size=args.size,
                workers=args.workers,
                world=WORLDS[args.world],
            ),
            total=args.n,
            desc="synth",
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
        validation_fraction=args.validation_fraction,
        seed=args.seed,
        workers=args.workers,
        hexagon=args.hexagon,
    )
    counts = manifest["counts"]
    for skipped in manifest["skipped"]:
        print(f"galseg: skipped: {skipped['file']}: {skipped['reason']}", file=sys.stderr)
    print(
        f"{counts['prepared']} prepared, {counts['skipped']} skipped "
        f"({counts['train']} train, {counts['val']} validation, {counts['test']} test) in {args.out}"
    )
    return 1 if counts["skipped"] else 0  # the others are prepared; the skipped are named above


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
    from galseg.dataset import NOISE
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
        recipe=args.recipe or TrainConfig.recipe,
        lr=args.lr,
        device=args.device,
        augment=args.augment,
        seed=args.seed,
        patience=args.patience,
        batch_norm=args.batch_norm,
        steps_per_epoch=args.steps_per_epoch,
        select_on=args.select_on,
        precision=args.precision,
        target=args.target,
        noise=NOISE if args.noise is None else args.noise,
        normalise=TrainConfig.normalise if args.normalise is None else args.normalise,
    )

    train(
        config,
        resume=args.resume,
        on_epoch=figure_3_after_each_epoch(config.preset),
        log=lambda line: print(line, flush=True),
    )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from galseg.evaluate import evaluate_run
    from galseg.inference import load
    from galseg.metrics import human_reference_markdown, table1_markdown
    from galseg.plots import evaluation_figures
    from galseg.train import read_run

    out = args.out or Path(args.run) / "evaluation"
    record = read_run(args.run)
    run_thresholds = sorted({t for ths in record["units"].values() for t in ths})
    if args.figure_threshold not in run_thresholds:
        raise GalsegError(
            f"--figure-threshold {args.figure_threshold}: {args.run} has thresholds {run_thresholds}"
        )
    structures = _structures(args.target, record, args.run)
    predictor = load(args.run, device=args.device)
    for structure in structures:
        # arms in the evaluation folder itself (as before bars); a bar in its 'bar' subfolder
        where = out if structure == "spiral" else out / structure
        evaluation = evaluate_run(
            args.run,
            dataset=args.dataset,
            out=where,
            full_resolution=args.full_resolution,
            tta=args.tta,
            human=args.human_reference,
            n_boot=args.bootstrap,
            batch_size=args.batch_size,
            predictor=predictor,
            structure=structure,
        )
        evaluation_figures(evaluation, where, threshold=args.figure_threshold)
        print(f"## {structure}\n\nEpoch chosen on: {evaluation.selection}.\n")
        print(table1_markdown(evaluation.table1, evaluation.intervals))
        if evaluation.human_reference is not None:
            print(human_reference_markdown(evaluation.human_reference))
        for row in evaluation.ece_table():
            print(f"ECE {row['VARIANT']} th={row['TH']}: {row['ECE']:.4f}")
        for row in evaluation.detection:  # a galaxy is marked where any of its pixels is
            print(
                f"galaxies th={row['TH']}: {row['TP']} of {row['TP'] + row['FN']} marked found, "
                f"{row['FP']} of {row['FP'] + row['TN']} unmarked given some; "
                f"ranking by highest P, AUC {row['AUC']:.2f}"
            )
        print(f"{structure}: catalogues, tables and figures in {where}\n")
    return 0


def _structures(target: str | None, record: dict, run) -> tuple[str, ...]:
    """The structures ``--target`` asks of a run (default: all it segments), checked against it."""
    have = TARGETS[record["config"].get("target", "spiral")]
    wanted = TARGETS[target] if target else have
    missing = [s for s in wanted if s not in have]
    if missing:
        trained = "+".join(have)
        raise GalsegError(f"--target {target}: {run} was trained for {trained}, not {'+'.join(missing)}")
    return wanted


def _predict(args: argparse.Namespace) -> int:
    from galseg.inference import CUT, REAL_ZOOMS, load
    from galseg.plots import prediction_overlay
    from galseg.predict import predict_files
    from galseg.ready import ready_cut, ready_run
    from galseg.train import RUN_FILE, parse_thresholds, read_run, start_runtime

    first = Path(args.inputs[0])
    ready = not (first / RUN_FILE).is_file()
    run, inputs = (ready_run(), args.inputs) if ready else (first, args.inputs[1:])
    if not inputs:
        raise GalsegError(f"{run}: no inputs after the run folder; give image files or folders")
    runtime = start_runtime(args.device)
    # the ready model is for the user's own survey cutouts: real-image settings unless told
    zooms = args.zoom or (REAL_ZOOMS if ready else (1.0,))
    cut = args.cut if args.cut is not None else (ready_cut() if ready else CUT)
    if ready and runtime.main:
        print(f"galseg's ready model, --zoom {','.join(map(str, zooms))} --cut {cut:g}")
    predictor = load(
        run,
        device=runtime.device,
        precision=args.precision,
        compile=args.compile,
        zooms=zooms,
        cut=cut,
        hexagon=args.hexagon,  # None: as the network's training images were prepared
    )
    if args.thresholds:
        predictor = predictor.select(parse_thresholds(args.thresholds))
    structures = _structures(args.target, read_run(run), run)
    if len(structures) == 1:
        predictor = predictor.only(structures[0])
    catalogue = predict_files(
        predictor,
        inputs,
        args.out,
        catalogue=args.catalogue,
        batch_size=args.batch_size,
        workers=args.workers,
        overlay=prediction_overlay if args.overlay else None,
        tta=args.tta,
        measure_arms_too=args.measure,
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


def _ready_model(args: argparse.Namespace) -> int:
    from galseg.ready import build_ready_model

    build_ready_model(args.work, real=args.real, log=lambda line: print(line, flush=True))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from galseg.demo import DemoSettings, run_demo

    given = (("n", args.n), ("epochs", args.epochs), ("recipe", args.recipe))
    overrides = {k: v for k, v in given if v is not None}
    if args.separate:
        overrides["head"] = "binary"
    settings = DemoSettings.quick(**overrides) if args.quick else DemoSettings(**overrides)
    run_demo(args.out, settings, real=args.real, log=lambda line: print(line, flush=True))
    return 0


# ----------------------------------------------------------------------------- checked values


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (and exit status 2), like every error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"galseg: error: {message} (see {self.prog} --help)\n")


def _count(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is too small (at least {minimum})")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"{value} is too large (at most {maximum})")
        return value

    parse.__name__ = f"whole number >= {minimum}" + (f" and <= {maximum}" if maximum is not None else "")
    return parse


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _positive_float(text: str) -> float:
    value = _float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be a finite number above 0")
    return value


def _share(text: str) -> float:
    value = _float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} must be between 0 and 1")
    return value


def _fraction(text: str) -> float:
    value = _positive_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"{text} must lie between 0 and 1")
    return value


def _zooms(text: str) -> tuple[float, ...]:
    """'1,0.6' -> (1.0, 0.6): centred crops, as shares of the image's side, in (0.1, 1]."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text}: use shares of the side like 1 or 1,0.6") from None
    if not all(0.1 <= v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text}: each zoom must lie between 0.1 and 1")
    return values


_threshold = _count(1)


def _add_report_target(p: argparse.ArgumentParser) -> None:
    """``--target`` of evaluate and predict: which of the run's structures to report."""
    p.add_argument(
        "--target",
        default=None,
        choices=list(TARGETS),
        help="structures to report (default: every one the run segments)",
    )


EXAMPLES = {
    "synth": "galseg synth --out synthetic/ --n 500 --seed 1",
    "prepare": "galseg prepare gz3d/ --out data128/ --size 128",
    "download": "galseg download --out gz3d/ --limit 100",
    "train": "galseg train data128/ --out run/ --preset small --head multi --target both --epochs 10",
    "evaluate": "galseg evaluate run/ --tta",
    "predict": "galseg predict my_cutouts/ --out masks/ --overlay",
    "ready-model": "galseg ready-model --work ready-model-work --real ../shared/real",
    "demo": "galseg demo --out demo-output",
}
"""One worked example per subcommand, shown at the end of its --help (and tested to parse)."""


def _command(sub, name: str, **kwargs) -> argparse.ArgumentParser:
    """A subcommand whose --help ends with its worked example."""
    return sub.add_parser(
        name,
        epilog=f"example:\n  {EXAMPLES[name]}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **kwargs,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="galseg", description=__doc__)
    parser.add_argument("--version", action="version", version=f"galseg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = _command(sub, "synth", help="write synthetic galaxies as GZ:3D files")
    p.add_argument("--out", required=True, type=Path, help="folder for the .fits.gz files")
    p.add_argument("--n", type=_count(1, 1_000_000), default=100, help="number of galaxies")
    p.add_argument("--seed", type=_count(0, 2**32 - 1), default=0)
    p.add_argument("--size", type=_count(32, 4096), default=525, help="image side in pixels (GZ:3D: 525)")
    p.add_argument("--workers", type=_count(1), default=None, help="processes (default: every core)")
    p.add_argument(
        "--world",
        choices=WORLD_NAMES,
        default=WORLD_NAMES[0],
        help="classic (the demo's); thick: bulges as thick as real ones and brighter bars, as the "
        "ready model is trained on (galseg.synthetic.World)",
    )
    p.add_argument(
        "--preview",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also plot the first 16 galaxies with their votes (preview.png)",
    )
    p.set_defaults(func=_synth)

    p = _command(sub, "prepare", help="resize GZ:3D files once into a training-ready dataset folder")
    p.add_argument("gz3d_dir", type=Path, help="folder searched recursively for .fits / .fits.gz")
    p.add_argument("--out", required=True, type=Path, help="dataset folder")
    p.add_argument(
        "--size", type=_count(16, 2048), default=128, help="side in pixels, a multiple of 16 (at most 2048)"
    )
    p.add_argument("--test-fraction", type=_fraction, default=0.25, help="share of each stratum for test")
    p.add_argument(
        "--validation-fraction",
        type=_fraction,
        default=0.1,
        help="share of the training galaxies kept aside to choose the epoch",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the train/test split")
    p.add_argument("--workers", type=_count(1), default=os.cpu_count() or 1, help="processes")
    p.add_argument(
        "--hexagon",
        choices=HEXAGON_MODES,
        default="paint",
        help="the MaNGA hexagon burned into GZ:3D images: paint it out (default) or keep it",
    )
    p.set_defaults(func=_prepare)

    p = _command(sub, "download", help="fetch the real GZ:3D files (SDSS DR17), resumable")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--limit", type=_count(1), default=None, help="only the first N files of the listing")
    p.add_argument("--workers", type=_count(1), default=8, help="parallel transfers")
    p.add_argument("--base-url", default=DEFAULT_BASE_URL)
    p.set_defaults(func=_download)

    p = _command(sub, "train", help="train U-Nets on a prepared dataset (one per threshold, or one for all)")
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
    p.add_argument(
        "--target",
        default="spiral",
        choices=list(TARGETS),
        help="what to segment: spiral arms, bars, or both with one network (needs --head multi)",
    )
    p.add_argument("--epochs", type=_count(1), default=20)
    p.add_argument("--batch-size", type=_count(1), default=16)
    p.add_argument(
        "--recipe",
        default=None,
        help="galseg (default): AdamW, warm-up and cosine decay from 3e-3, cross-entropy + soft "
        "Dice, gradient clipping, batch-norm statistics from clean images; base: constant Adam "
        "1e-3 and cross-entropy alone (galseg before 0.2), the epoch chosen on validation; "
        "paper: base with the epoch chosen on the test split, as published",
    )
    p.add_argument(
        "--lr", type=_positive_float, default=None, help="peak learning rate (default: the recipe's)"
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="random flips and quarter turns of each training image",
    )
    p.add_argument(
        "--noise",
        type=_share,
        default=None,
        help="largest sky noise the augmentation adds, as a share of the image's range "
        "(default: galseg.dataset.NOISE)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--patience", type=_count(1), default=5, help="stop after this many epochs without a better loss"
    )
    p.add_argument(
        "--select-on",
        default=None,
        choices=["validation", "test"],
        help="split whose loss picks best.pt and stops early (default: the recipe's; "
        "test: the paper's choice, biased)",
    )
    p.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "float32", "bf16"],
        help="auto: bf16 autocast on CUDA and on CPUs with native bf16, else float32",
    )
    p.add_argument(
        "--batch-norm",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="batch normalisation after each convolution (default: the preset's; paper: off)",
    )
    p.add_argument(
        "--normalise",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="put each image on its own scale first, sky at 0 and bright end at 1: for networks "
        "meant for other surveys' cutouts (default: off, the pixels as they are, as the paper did)",
    )
    p.add_argument(
        "--steps-per-epoch", type=_count(1), default=None, help="cap batches per epoch (quick runs)"
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.set_defaults(func=_train)

    p = _command(
        sub, "evaluate", help="the paper's per-galaxy metrics, Table 1 and figures on the test split"
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
    _add_report_target(p)
    p.add_argument("--figure-threshold", type=_threshold, default=3, help="threshold of Figures 1 and 5")
    p.add_argument("--tta", action="store_true", help="also score test-time augmentation (8 orientations)")
    p.add_argument(
        "--human-reference",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="score one half of the volunteers and the model against the other half (needs the GZ:3D files)",
    )
    p.add_argument("--bootstrap", type=_count(0), default=1000, help="resamples for the 95%% intervals")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=_count(1), default=32)
    p.set_defaults(func=_evaluate)

    p = _command(sub, "predict", help="arm masks and a catalogue for new images (GZ:3D, FITS, PNG, JPEG)")
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="[RUN] INPUT",
        help="a run folder made by galseg train (optional: galseg's ready model otherwise), then "
        "image files, folders, or text files listing paths",
    )
    p.add_argument("--out", required=True, type=Path)
    _add_report_target(p)
    p.add_argument("--thresholds", default=None, help="a subset of the run's thresholds, e.g. 3 or 1,3,5")
    p.add_argument("--catalogue", default="catalogue.ecsv", help="file name; .ecsv, .csv, .fits or .parquet")
    p.add_argument("--batch-size", type=_count(1), default=16)
    p.add_argument(
        "--workers", type=_count(0), default=2, help="processes reading inputs ahead of the network (0: none)"
    )
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "float32", "bf16"],
        help="auto: bf16 autocast on CUDA and on CPUs with native bf16, else float32",
    )
    p.add_argument(
        "--zoom",
        type=_zooms,
        default=None,
        help="centred crops to predict, as shares of the side, highest probability kept: 1 (the "
        "image as given, GZ:3D framing; a run's default) or 1,0.6 for survey cutouts framed wider "
        "(the ready model's default; see docs/results.md)",
    )
    p.add_argument(
        "--cut",
        type=_fraction,
        default=None,
        help="mark a pixel where P(votes >= th) exceeds this (a run's default 0.5, as the networks "
        "were trained); 0.2 for real survey images with a network trained on synthetic galaxies; "
        "without a run, the cut chosen for the ready model's weights (0.6; see docs/results.md)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the networks: minutes of compiling first, faster after (long surveys)",
    )
    p.add_argument(
        "--hexagon",
        choices=HEXAGON_MODES,
        default=None,
        help="a MaNGA hexagon burned into an input: paint it out or keep it (default: as the "
        "network's training images were prepared; paint for the ready model)",
    )
    p.add_argument("--overlay", action="store_true", help="also write PNG overlays of the masks")
    p.add_argument(
        "--tta",
        action="store_true",
        help="average over the 8 flips/quarter turns; write their spread as an UNCERT HDU",
    )
    p.add_argument(
        "--measure",
        "--arms",
        dest="measure",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure arm count, pitch angle and chirality (arms.ecsv), and the bar's length, angle "
        "and light, at each threshold",
    )
    p.set_defaults(func=_predict)

    p = _command(
        sub,
        "ready-model",
        help="make the network shipped with galseg (fixed seeds), with its real-image check",
    )
    p.add_argument("--work", type=Path, default=Path("ready-model-work"), help="working folder (resumable)")
    p.add_argument(
        "--real",
        type=Path,
        default=Path("../shared/real"),
        help="real cutouts to check it on (never to train)",
    )
    p.set_defaults(func=_ready_model)

    p = _command(sub, "demo", help="the whole study on synthetic galaxies, with an HTML report")
    p.add_argument("--out", type=Path, default=Path("demo-output"))
    p.add_argument(
        "--n", type=_count(8), default=None, help="number of synthetic galaxies (default 2000; quick 160)"
    )
    p.add_argument("--epochs", type=_count(1), default=None)
    p.add_argument("--quick", action="store_true", help="a smoke test: under two minutes")
    p.add_argument(
        "--recipe",
        default=None,
        help="training recipe: galseg (default), base or paper (galseg train --help)",
    )
    p.add_argument(
        "--separate", action="store_true", help="six networks, one per threshold (the paper's way)"
    )
    p.add_argument(
        "--real",
        type=Path,
        default=Path("../shared/real"),
        help="real cutouts to check the network on, beside the synthetic galaxies (skipped if absent)",
    )
    p.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: user errors become one line on stderr and exit status 2."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a bad argument already reported in one line
        return int(exc.code or 0)
    try:
        if getattr(args, "out", None) is not None:
            writable_folder(args.out)
        if getattr(args, "work", None) is not None:
            writable_folder(args.work, option="--work")
        return int(args.func(args))
    except GalsegError as exc:
        print(f"galseg: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("galseg: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except OSError as exc:  # the machine's, not galseg's: a full disk, a folder gone, no permission
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"galseg: error: {where}{exc.strerror or exc}; work finished so far is kept", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
