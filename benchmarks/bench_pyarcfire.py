"""galseg's arm measurements beside pyarcfire (the SpArcFiRe port), on the same images.

Synthetic spirals (grand-design, the generator's truth): pyarcfire on the image; galseg on the
volunteers' mask at th=3 and, with ``--run``, on the network's mask, the disc geometry measured
from the image and the volunteers' clicks. Real (``shared/real/sparcfire``, the non-weak
galaxies; SpArcFiRe's own pitch and winding as the reference): pyarcfire on the image; galseg on
SpArcFiRe's own arm mask and, with ``--run``, on the network's mask at th=1 (pixels above 0.5, and
above ``inference.REAL_CUT``, the cut-off for real images). Per method: share of
galaxies measured, median |pitch error|, winding agreement, arm-count agreement (synthetic) and
seconds per galaxy, measured in this one run.

pyarcfire is not a galseg dependency: install it under the constraints file that pins torch,
``pip install -c .venv/constraints.txt pyarcfire``. Its winding names are tied to S/Z here by a
noiseless Z-wise spiral made by this script.

    python benchmarks/bench_pyarcfire.py --dataset DATASET [--run RUN] [--n 30] [--real ../shared/real]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from galseg import THRESHOLDS
from galseg.arms import agreement_map, count_arms, disc_geometry, linear_flux, measure_arms
from galseg.dataset import open_dataset
from galseg.gz3d import read_gz3d, volunteer_hints
from galseg.inference import CUT, REAL_CUT, load
from galseg.io import progress, read_picture
from galseg.real import real_galaxies
from galseg.synthetic import truth_from_metadata

ROOT = Path(__file__).resolve().parents[1]


def _z_spiral(size: int = 256) -> np.ndarray:
    """A noiseless two-arm log spiral that turns anticlockwise outward as displayed (Z-wise)."""
    y, x = np.mgrid[0:size, 0:size]
    dx, dy = x - size / 2, size / 2 - y  # y up
    r, theta = np.hypot(dx, dy) + 1e-9, np.arctan2(dy, dx)
    image = np.zeros((size, size))
    for arm in (0, np.pi):
        ridge = arm + np.log(r / 8) / np.tan(np.radians(20))  # theta grows outward: anticlockwise
        delta = np.angle(np.exp(1j * (theta - ridge)))
        image += np.exp(-0.5 * (delta * r / 4) ** 2) * (r > 10) * (r < 0.45 * size)
    return image + np.exp(-0.5 * (r / 6) ** 2)


def pyarcfire_measure(finder, image: np.ndarray, z_name) -> dict:
    start = time.perf_counter()
    try:
        result = finder.extract(image)
        n = result.num_clusters
        pitch = abs(np.degrees(result.get_overall_pitch_angle())) if n else np.nan
        winding = result.get_dominant_chirality()
        chirality = "" if not n or winding.name == "NONE" else ("Z" if winding == z_name else "S")
    except Exception:  # noqa: BLE001 - a failure is a galaxy not measured
        n, pitch, chirality = 0, np.nan, ""
    return {"n": n, "pitch": pitch, "chirality": chirality, "seconds": time.perf_counter() - start}


def galseg_measure(mask: np.ndarray, image: np.ndarray, geometry, levels: np.ndarray | None = None) -> dict:
    """galseg's measurement of one mask; ``levels``: the masks at every threshold, on which the
    arms are counted, as galseg predict and evaluate count them."""
    start = time.perf_counter()
    count = count_arms(agreement_map(levels), geometry) if levels is not None else None
    _, summary = measure_arms(mask, image, geometry=geometry, count=count)
    return {
        "n": summary.count,  # the arm count galseg reports (ARM_COUNT), not the segments found
        "pitch": summary.pitch_deg,
        "chirality": summary.chirality,
        "seconds": time.perf_counter() - start,
    }


def summarise(rows: list[dict], method: str, *, count: bool) -> dict:
    got = [r[method] for r in rows]
    measured = [g for g, r in zip(got, rows, strict=True) if np.isfinite(g["pitch"]) and g["chirality"]]
    refs = [r for g, r in zip(got, rows, strict=True) if np.isfinite(g["pitch"]) and g["chirality"]]
    errors = np.abs([g["pitch"] - r["ref_pitch"] for g, r in zip(measured, refs, strict=True)])
    out = {
        "method": method,
        "galaxies": len(rows),
        "measured": len(measured),
        "median_pitch_error_deg": float(np.median(errors)) if len(errors) else np.nan,
        "winding_agreement": (
            float(
                np.mean([g["chirality"] == r["ref_chirality"] for g, r in zip(measured, refs, strict=True)])
            )
            if measured
            else np.nan
        ),
        "seconds_per_galaxy": float(np.mean([g["seconds"] for g in got])),
    }
    if count:
        out["arm_count_agreement"] = float(
            np.mean([g["n"] == r["ref_n"] for g, r in zip(got, rows, strict=True)])
        )
    return out


def print_table(title: str, results: list[dict]) -> None:
    print(f"\n{title}")
    print("| method | measured | median pitch error | winding agrees | arm count agrees | s / galaxy |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        count = f"{r['arm_count_agreement']:.2f}" if "arm_count_agreement" in r else "-"
        print(
            f"| {r['method']} | {r['measured']}/{r['galaxies']} | {r['median_pitch_error_deg']:.1f} deg | "
            f"{r['winding_agreement']:.2f} | {count} | {r['seconds_per_galaxy']:.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, required=True, help="a prepared synthetic dataset")
    parser.add_argument("--run", type=Path, default=None, help="a trained run, for the network's masks")
    parser.add_argument("--n", type=int, default=30, help="synthetic grand-design spirals")
    parser.add_argument("--real", type=Path, default=ROOT.parent / "shared" / "real")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/bench_pyarcfire.json"))
    args = parser.parse_args()
    try:
        from pyarcfire import SpiralFinder
    except ImportError:
        raise SystemExit(
            "pyarcfire is not installed: pip install -c .venv/constraints.txt pyarcfire"
        ) from None
    logging.getLogger("pyarcfire").setLevel(logging.ERROR)
    finder = SpiralFinder()
    z_name = finder.extract(_z_spiral()).get_dominant_chirality()
    predictor = load(args.run, device="cpu").only("spiral") if args.run else None

    data = open_dataset(args.dataset)
    source_dir = Path(data.manifest["source_dir"])
    rows = []
    for row in progress(data.catalogue, desc="synthetic"):
        if len(rows) >= args.n:
            break
        galaxy = read_gz3d(source_dir / row["SOURCE_FILE"], outlines=False)
        truth = truth_from_metadata(galaxy.metadata)
        if truth is None or truth.kind != "spiral" or not truth.n_arms:
            continue
        centre, stars = volunteer_hints(galaxy)
        geometry = disc_geometry(galaxy.image, centre=centre, stars=stars)
        record = {"ref_n": truth.n_arms, "ref_pitch": truth.pitch_deg, "ref_chirality": truth.chirality}
        record["pyarcfire (image)"] = pyarcfire_measure(finder, linear_flux(galaxy.image), z_name)
        votes = np.stack([galaxy.spiral_votes >= th for th in THRESHOLDS])
        record["galseg (volunteers' mask, th=3)"] = galseg_measure(votes[2], galaxy.image, geometry, votes)
        if predictor is not None:
            p = predictor.predict_image(galaxy.image) > CUT
            record["galseg (network's mask, th=3)"] = galseg_measure(p[2], galaxy.image, geometry, p)
        rows.append(record)
    methods = [k for k in rows[0] if not k.startswith("ref_")] if rows else []
    synthetic = [summarise(rows, m, count=True) for m in methods]

    real_rows = []
    for galaxy in progress(real_galaxies(args.real), desc="real"):
        if galaxy.arm_mask is None:
            continue  # only the non-weak SpArcFiRe galaxies carry a reference
        image = read_picture(galaxy.path)
        geometry = disc_geometry(image)
        reference = read_picture(galaxy.arm_mask)[..., 0] > 127
        record = {"ref_pitch": galaxy.pitch_deg, "ref_chirality": galaxy.chirality, "ref_n": -1}
        record["pyarcfire (image)"] = pyarcfire_measure(finder, linear_flux(image), z_name)
        record["galseg (SpArcFiRe's mask)"] = galseg_measure(reference, image, geometry)
        if predictor is not None:
            p = predictor.predict_image(image)
            record["galseg (network's mask, th=1)"] = galseg_measure(p[0] > CUT, image, geometry)
            record[f"galseg (network's mask, th=1, cut {REAL_CUT:g})"] = galseg_measure(
                p[0] > REAL_CUT, image, geometry
            )
        real_rows.append(record)
    real_methods = [k for k in real_rows[0] if not k.startswith("ref_")] if real_rows else []
    real = [summarise(real_rows, m, count=False) for m in real_methods]

    print_table(f"Synthetic grand-design spirals ({len(rows)}), against the generator's truth:", synthetic)
    print_table(f"Real SpArcFiRe galaxies ({len(real_rows)}), against SpArcFiRe's pitch and winding:", real)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"synthetic": synthetic, "real": real}, indent=1))


if __name__ == "__main__":
    main()
