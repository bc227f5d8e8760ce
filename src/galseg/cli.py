"""The ``galseg`` command: argument parsing only; each subcommand calls one library function."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from galseg import GalsegError, __version__


def _synth(args: argparse.Namespace) -> int:
    from galseg.plots import gz3d_preview
    from galseg.progress import progress
    from galseg.synthetic import write_synthetic

    paths = list(progress(write_synthetic(args.out, n=args.n, seed=args.seed, size=args.size,
                                          workers=args.workers),
                          total=args.n, label="synth"))
    if args.preview:
        gz3d_preview(paths[:16], Path(args.out) / "preview.png")
    print(f"{len(paths)} synthetic galaxies in {args.out}")
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
    p.add_argument("--preview", action=argparse.BooleanOptionalAction, default=True,
                   help="also plot the first 16 galaxies with their votes (preview.png)")
    p.set_defaults(func=_synth)
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
