"""The synthetic GZ:3D world against the three real DR17 files, side by side.

For each real file in ``--real`` (default ``../shared/real/gz3d``) and ``--n`` synthetic galaxies
of ``--seed``: the colour of the bulge (the central 9x9 pixels) and of the disc (a ring at half the
galaxy's radius), as g/r and b/r of the 8-bit image; the galaxy's extent (the radius of a circle
with the area of its footprint, as predict measures it) over the frame's side; the hexagon's
pixels; the share of arm outlines the production rule drops; the peak of HDU 3 against the number
of volunteers who drew arms.

    python benchmarks/bench_real_gz3d.py --n 60

With ``--run`` (a run folder, or ``ready`` for galseg's ready model; several side by side), each
network at its ``galseg predict`` defaults on the real files (``galseg.real.gz3d_check``): arm
pixels and those on the hexagon, recall of the pixels three volunteers drew, precision against
any volunteer's, bar pixels beside the volunteers', against the goals of the real-GZ:3D issue;
and a figure of each (``gz3d_check_<run>.png`` in ``--out``).

    python benchmarks/bench_real_gz3d.py --n 0 --run ready demo-output/run
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def describe(galaxy) -> dict:
    from galseg.footprint import footprint
    from galseg.gz3d import _magenta, is_simple_outline, paint_out_hexagon

    image = galaxy.image
    clean = paint_out_hexagon(image)
    size = image.shape[0]
    c = size // 2
    rgb = clean.astype(np.float64)
    bulge = rgb[c - 4 : c + 5, c - 4 : c + 5].reshape(-1, 3).mean(axis=0)
    area = footprint(clean)
    radius = np.sqrt(area.sum() / np.pi)
    y, x = np.mgrid[0:size, 0:size]
    ring = np.abs(np.hypot(x - c, y - c) - 0.5 * radius) < 3
    disc = rgb[ring & area].mean(axis=0) if (ring & area).any() else bulge
    outlines = [p for d in galaxy.spiral_outlines() for p in d]
    drawers = sum(1 for d in galaxy.spiral_outlines() if d)
    return {
        "bulge_g_r": bulge[1] / max(bulge[0], 1),
        "bulge_b_r": bulge[2] / max(bulge[0], 1),
        "bulge_r": bulge[0],
        "disc_g_r": disc[1] / max(disc[0], 1),
        "disc_b_r": disc[2] / max(disc[0], 1),
        "extent": radius / size,
        "hexagon_px": int(_magenta(image).sum()),
        "outlines": len(outlines),
        "dropped": sum(not is_simple_outline(p) for p in outlines),
        "drawers": drawers,
        "peak": int(galaxy.spiral_votes.max()),
        "sky_r": float(np.median(rgb[..., 0])),
    }


def check_networks(run: str, folder: Path, out: Path) -> None:
    """One network on the real GZ:3D files at its predict defaults: the table and the figure."""
    from galseg.gz3d import find_gz3d_files, read_gz3d
    from galseg.inference import CUT, REAL_ZOOMS, load
    from galseg.plots import gz3d_check_figure
    from galseg.ready import ready_cut, ready_run
    from galseg.real import gz3d_scores

    ready = run == "ready"
    predictor = (
        load(ready_run(), zooms=REAL_ZOOMS, cut=ready_cut()) if ready else load(run, zooms=(1.0,), cut=CUT)
    )
    galaxies = [read_gz3d(p) for p in find_gz3d_files(folder)]
    planes = [predictor.split(predictor.predict_image(g.image)) for g in galaxies]
    rows = [
        r
        for g, p in zip(galaxies, planes, strict=True)
        for r in gz3d_scores(p, g, predictor.thresholds, predictor.cut)
    ]
    zoom = ",".join(f"{z:g}" for z in predictor.zooms)
    print(f"\n{run} (--zoom {zoom} --cut {predictor.cut:g}) on {len(galaxies)} real GZ:3D files")
    print(
        "| file | th | volunteers' arm px | arm px (on the hexagon) | recall of 3+ votes "
        "| precision vs 1+ | bar px (volunteers') |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['NAME']} | {r['TH']} | {r['VOLUNTEER_ARM_PX']} | "
            f"{r['ARM_PX']} ({r['ARM_PX_ON_HEXAGON']}) | "
            f"{r['RECALL']:.2f} | {r['PRECISION']:.2f} | {r['BAR_PX']} ({r['VOLUNTEER_BAR_PX']}) |"
        )
    undrawn = {r["NAME"] for r in rows if r["TH"] == 1 and r["VOLUNTEER_ARM_PX"] == 0}
    barless = {r["NAME"] for r in rows if r["TH"] == 1 and r["VOLUNTEER_BAR_PX"] == 0}
    drawn3 = [r for r in rows if r["TH"] == 3 and r["NAME"] not in undrawn]
    goals = {
        "no arm pixel on the hexagon": sum(r["ARM_PX_ON_HEXAGON"] for r in rows) == 0,
        "no arms at th >= 2 where nobody drew arms": not any(
            r["ARM_PX"] for r in rows if r["NAME"] in undrawn and r["TH"] >= 2
        ),
        "th = 3 recall >= 0.5 and precision >= 0.5 where volunteers drew": bool(drawn3)
        and all(r["RECALL"] >= 0.5 and r["PRECISION"] >= 0.5 for r in drawn3),
        "no bar where nobody drew one": not any(r["BAR_PX"] for r in rows if r["NAME"] in barless),
    }
    for goal, met in goals.items():
        print(f"- {goal}: {'met' if met else 'NOT met'}")
    name = "ready" if ready else Path(run).name
    out.mkdir(parents=True, exist_ok=True)
    figure = gz3d_check_figure(
        galaxies,
        planes,
        list(predictor.thresholds),
        out / f"gz3d_check_{name}.png",
        cut=predictor.cut,
        title=f"{name} on real GZ:3D files (--zoom {zoom} --cut {predictor.cut:g}; "
        "hexagon painted out before the network)",
    )
    print(f"figure: {figure}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--real", type=Path, default=ROOT.parent / "shared" / "real" / "gz3d")
    parser.add_argument("--n", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run", nargs="+", default=[], help="run folders, or ready (the ready model)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    for run in args.run:
        check_networks(run, args.real, args.out)
    if not args.n:
        return

    from galseg.gz3d import find_gz3d_files, read_gz3d
    from galseg.synthetic import synthesize

    real = [describe(read_gz3d(p)) for p in find_gz3d_files(args.real)]
    synthetic = [describe(synthesize(i, seed=args.seed)[0]) for i in range(args.n)]
    rows = [
        ("bulge g/r", "bulge_g_r", "{:.2f}"),
        ("bulge b/r", "bulge_b_r", "{:.2f}"),
        ("bulge r (0-255)", "bulge_r", "{:.0f}"),
        ("disc g/r (half the radius)", "disc_g_r", "{:.2f}"),
        ("disc b/r", "disc_b_r", "{:.2f}"),
        ("sky r (median pixel)", "sky_r", "{:.0f}"),
        ("galaxy extent / frame", "extent", "{:.3f}"),
        ("hexagon pixels", "hexagon_px", "{:.0f}"),
    ]
    print(
        f"| measure | real ({len(real)} files): each "
        f"| synthetic ({len(synthetic)}): 10th-50th-90th percentile |"
    )
    print("| --- | --- | --- |")
    for label, key, form in rows:
        mine = " / ".join(form.format(r[key]) for r in real)
        q = np.percentile([s[key] for s in synthetic], [10, 50, 90])
        print(f"| {label} | {mine} | {' - '.join(form.format(v) for v in q)} |")
    drawn_real = [r for r in real if r["outlines"]]
    drawn_syn = [s for s in synthetic if s["outlines"]]
    share_real = sum(r["dropped"] for r in drawn_real) / max(sum(r["outlines"] for r in drawn_real), 1)
    share_syn = sum(s["dropped"] for s in drawn_syn) / max(sum(s["outlines"] for s in drawn_syn), 1)
    print(f"| outlines dropped (cross themselves) | {share_real:.2f} | {share_syn:.2f} |")
    for r in drawn_real:
        near = [s["peak"] for s in drawn_syn if abs(s["drawers"] - r["drawers"]) <= 1]
        q = np.percentile(near, [10, 50, 90]) if near else [np.nan] * 3
        print(
            f"| HDU 3 peak, {r['drawers']} +-1 drew arms | {r['peak']} | "
            f"{' - '.join(f'{v:.0f}' for v in q)} ({len(near)} galaxies) |"
        )


if __name__ == "__main__":
    main()
