"""Arm measurements against the truth the synthetic generator stored.

For each test galaxy of a prepared synthetic dataset: arms measured on the volunteers' mask
(votes >= th at full resolution) and on the model's mask (a trained run), with the disc geometry
measured (never the generator's): from the image alone, and with the volunteers' centre and star
clicks (GZ:3D HDUs 6 and 7); against the generator's arm count, pitch, chirality and centre.
Grand-design spirals only for pitch and count (a flocculent galaxy has no single true count).

- median |pitch error|: over spirals where arms were found (the galaxy's pitch, ArmSummary.pitch_deg);
- arm-count accuracy: measured count equals the true count, over all galaxies (0 for arm-less),
  over the spirals, and over the spirals whose mask marks anything; for the segments found and
  for the mask's dominant Fourier mode (``ArmSummary.mode``);
- the drawn masks that hold every one of the generator's arms, and how often the Fourier mode
  equals the number of arms the mask holds (the count a perfect measurer could give);
- chirality accuracy: over spirals where a chirality was measured.

A last row measures with the generator's own geometry, for scale only: no user has it.

    python benchmarks/bench_arms.py --dataset demo-output/dataset --run demo-output/run --n 600
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import ndimage

from galseg.arms import DiscGeometry, disc_geometry, measure_arms
from galseg.bars import angle_difference_deg
from galseg.dataset import open_dataset
from galseg.gz3d import read_gz3d, volunteer_hints
from galseg.inference import load
from galseg.io import progress
from galseg.synthetic import truth_from_metadata


def _share_right(measured: np.ndarray, truth: np.ndarray, where: np.ndarray) -> float:
    return float(np.mean(measured[where] == truth[where])) if where.any() else np.nan


def arms_in_mask(truth, mask: np.ndarray, reach_px: float = 3.0) -> int:
    """How many of the generator's arms the mask actually holds: an arm counts when most of its
    ridge, from its start out over 1.6 scale lengths (the shortest arm the generator makes), lies
    within ``reach_px`` of the mask. A measurer can count no more arms than were drawn."""
    if not truth.n_arms or not mask.any():
        return 0
    near = ndimage.distance_transform_edt(~mask) <= reach_px
    radii = np.geomspace(truth.arm_start_px, truth.arm_start_px + 1.6 * truth.scale_length_px, 24)
    held = 0
    for arm in range(truth.n_arms):
        x, y = np.round(truth.ridge_xy(arm, radii)).astype(int).T
        inside = (x >= 0) & (y >= 0) & (x < mask.shape[1]) & (y < mask.shape[0])
        held += bool(inside.any() and near[y[inside], x[inside]].mean() >= 0.5)
    return held


def summarise(rows: list[dict], source: str) -> dict:
    rows = [r for r in rows if r["kind"] != "flocculent"]
    truth_n = np.array([r["true_n"] for r in rows])
    found_n = np.array([r[f"{source}_n"] for r in rows])
    spirals = truth_n > 0
    found = spirals & (found_n > 0)
    mode_n = np.array([r[f"{source}_mode"] for r in rows])
    drawn = spirals & np.array([r[f"{source}_drawn"] for r in rows])
    held = np.array([r[f"{source}_held"] for r in rows])
    pitch_error = np.abs(np.array([r[f"{source}_pitch"] - r["true_pitch"] for r in rows]))[found]
    chirality = np.array([r[f"{source}_chirality"] == r["true_chirality"] for r in rows])[found]
    return {
        "galaxies": len(rows),
        "spirals": int(spirals.sum()),
        "spirals_with_arms_found": int(found.sum()),
        "median_abs_pitch_error_deg": float(np.median(pitch_error)) if pitch_error.size else np.nan,
        "arm_count_accuracy": float(np.mean(found_n == truth_n)),
        "arm_count_accuracy_spirals": float(np.mean(found_n[spirals] == truth_n[spirals]))
        if spirals.any()
        else np.nan,
        "arm_count_accuracy_drawn": _share_right(found_n, truth_n, drawn),
        "spirals_drawn": int(drawn.sum()),
        "mode_accuracy_spirals": _share_right(mode_n, truth_n, spirals),
        "mode_accuracy_drawn": _share_right(mode_n, truth_n, drawn),
        "all_arms_in_mask_drawn": float(np.mean(held[drawn] == truth_n[drawn])) if drawn.any() else np.nan,
        "mode_accuracy_vs_arms_in_mask": _share_right(mode_n, held, drawn & (held > 0)),
        "chirality_accuracy": float(np.mean(chirality)) if chirality.size else np.nan,
        "median_axis_ratio_error": float(
            np.median(np.array([r[f"{source}_axis_ratio_error"] for r in rows])[spirals])
        ),
        "median_angle_error_deg": float(
            np.median(np.array([r[f"{source}_angle_error"] for r in rows])[spirals])
        ),
        "centre_within_5px": float(
            np.mean(np.array([r[f"{source}_centre_error"] for r in rows])[spirals] <= 5)
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, required=True, help="a prepared synthetic dataset")
    parser.add_argument("--run", type=Path, default=None, help="a trained run (else volunteers only)")
    parser.add_argument("--n", type=int, default=600, help="test galaxies to measure")
    parser.add_argument("--threshold", type=int, default=3)
    parser.add_argument(
        "--split", default="test", help="test, train, or all (for a dataset the run never saw)"
    )
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/bench_arms.json"))
    args = parser.parse_args()

    data = open_dataset(args.dataset)
    source_dir = Path(data.manifest["source_dir"])
    chosen = data.catalogue if args.split == "all" else data.catalogue[data.catalogue["SPLIT"] == args.split]
    test = chosen[: args.n]
    predictor = load(args.run, device="cpu").select([args.threshold]).only("spiral") if args.run else None
    rows = []
    for row in progress(test, desc="arms"):
        galaxy = read_gz3d(source_dir / row["SOURCE_FILE"], outlines=False)
        truth = truth_from_metadata(galaxy.metadata)
        if truth is None:
            raise SystemExit(f"{row['SOURCE_FILE']}: not a synthetic galaxy, no truth to compare with")
        record = {
            "kind": truth.kind,
            "true_n": truth.n_arms,
            "true_pitch": truth.pitch_deg,
            "true_chirality": truth.chirality,
        }
        masks = {"volunteers": galaxy.spiral_votes >= args.threshold}
        if predictor is not None:
            masks["model"] = predictor.predict_image(galaxy.image)[0] > 0.5
        centre, stars = volunteer_hints(galaxy)
        geometries = {
            "image": disc_geometry(galaxy.image),
            "clicks": disc_geometry(galaxy.image, centre=centre, stars=stars),
            "generator's (for scale)": DiscGeometry(
                truth.centre_x, truth.centre_y, truth.axis_ratio, np.radians(truth.position_angle_deg) % np.pi
            ),
        }
        held = {source: arms_in_mask(truth, mask) for source, mask in masks.items()}
        for source, mask in masks.items():
            for how, geometry in geometries.items():
                _, summary = measure_arms(mask, galaxy.image, geometry=geometry)
                record.update(
                    {
                        f"{source}, {how}_n": summary.n_arms,
                        f"{source}, {how}_pitch": summary.pitch_deg,
                        f"{source}, {how}_chirality": summary.chirality,
                        f"{source}, {how}_mode": summary.mode,
                        f"{source}, {how}_drawn": bool(mask.any()),
                        f"{source}, {how}_held": held[source],
                        f"{source}, {how}_centre_error": float(
                            np.hypot(geometry.x - truth.centre_x, geometry.y - truth.centre_y)
                        ),
                        f"{source}, {how}_axis_ratio_error": abs(geometry.axis_ratio - truth.axis_ratio),
                        f"{source}, {how}_angle_error": float(
                            angle_difference_deg(
                                np.degrees(geometry.position_angle), truth.position_angle_deg
                            )
                        ),
                    }
                )
        rows.append(record)
    sources = [f"{m}, {g}" for m in ("volunteers", "model") for g in geometries]
    results = {source: summarise(rows, source) for source in sources if f"{source}_n" in rows[0]}
    print(
        f"\n{len(rows)} synthetic galaxies ({args.split} split), masks at th={args.threshold}, "
        "geometry measured (from the image alone, or with the volunteers' centre and star clicks)"
    )
    print(
        "| mask, geometry | spirals (mask drawn, arms found) | median abs pitch error | "
        "count right, segments (all / spirals / drawn) | count right, Fourier mode (spirals / drawn) | "
        "drawn masks holding every arm | Fourier mode = arms the mask holds | "
        "winding accuracy | centre within 5 px | median axis-ratio / angle error |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for source, r in results.items():
        print(
            f"| {source} | {r['spirals']} ({r['spirals_drawn']}, {r['spirals_with_arms_found']}) | "
            f"{r['median_abs_pitch_error_deg']:.1f} deg"
            f" | {r['arm_count_accuracy']:.2f} / {r['arm_count_accuracy_spirals']:.2f} / "
            f"{r['arm_count_accuracy_drawn']:.2f} | {r['mode_accuracy_spirals']:.2f} / "
            f"{r['mode_accuracy_drawn']:.2f} | {r['all_arms_in_mask_drawn']:.2f} | "
            f"{r['mode_accuracy_vs_arms_in_mask']:.2f} | {r['chirality_accuracy']:.2f} | "
            f"{r['centre_within_5px']:.2f} | {r['median_axis_ratio_error']:.3f} / "
            f"{r['median_angle_error_deg']:.1f} deg |"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
