"""Arm measurements against the truth the synthetic generator stored.

For each test galaxy of a prepared synthetic dataset: arms measured on the volunteers' mask
(votes >= th at full resolution) and on the model's mask (a trained run), with the disc geometry
measured (never the generator's): from the image alone, and with the volunteers' centre and star
clicks (GZ:3D HDUs 6 and 7); against the generator's arm count, pitch, chirality and centre.
Grand-design spirals only for pitch and count (a flocculent galaxy has no single true count).

- median |pitch error|: over spirals where arms were found (the galaxy's pitch, ArmSummary.pitch_deg);
- arm-count accuracy: measured count equals the true count, over all galaxies (0 for arm-less),
  over the spirals, and over the spirals whose mask marks anything; for the segments found and
  for the arm count galseg reports (``ArmSummary.count``, ARM_COUNT: counted on every level's
  mask at once), and that count on the th mask alone;
- the drawn masks that hold every one of the generator's arms, at th and at any level (votes
  >= 1), and how often ARM_COUNT equals the number of arms drawn at any level (the count a
  perfect measurer could give);
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

from galseg import THRESHOLDS
from galseg.arms import DiscGeometry, agreement_map, count_arms, disc_geometry, measure_arms
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
    count_n = np.array([r[f"{source}_count"] for r in rows])
    alone_n = np.array([r[f"{source}_count_alone"] for r in rows])
    drawn = spirals & np.array([r[f"{source}_drawn"] for r in rows])
    held = np.array([r[f"{source}_held"] for r in rows])
    held_any = np.array([r[f"{source}_held_any"] for r in rows])
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
        "count_accuracy_spirals": _share_right(count_n, truth_n, spirals),
        "count_accuracy_drawn": _share_right(count_n, truth_n, drawn),
        "count_alone_accuracy_drawn": _share_right(alone_n, truth_n, drawn),
        "all_arms_in_mask_drawn": float(np.mean(held[drawn] == truth_n[drawn])) if drawn.any() else np.nan,
        "all_arms_at_any_level_drawn": _share_right(held_any, truth_n, drawn),
        "count_accuracy_vs_arms_drawn": _share_right(count_n, held_any, drawn & (held_any > 0)),
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
    predictor = load(args.run, device="cpu").only("spiral") if args.run else None
    if predictor is not None and args.threshold not in predictor.thresholds:
        raise SystemExit(f"{args.run}: predicts thresholds {predictor.thresholds}, not {args.threshold}")
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
        # every level's mask, lowest threshold first: arms are counted on all of them at once
        levels = {"volunteers": np.stack([galaxy.spiral_votes >= th for th in THRESHOLDS])}
        masks = {"volunteers": levels["volunteers"][THRESHOLDS.index(args.threshold)]}
        if predictor is not None:
            levels["model"] = predictor.predict_image(galaxy.image) > predictor.cut
            masks["model"] = levels["model"][predictor.thresholds.index(args.threshold)]
        centre, stars = volunteer_hints(galaxy)
        geometries = {
            "image": disc_geometry(galaxy.image),
            "clicks": disc_geometry(galaxy.image, centre=centre, stars=stars),
            "generator's (for scale)": DiscGeometry(
                truth.centre_x, truth.centre_y, truth.axis_ratio, np.radians(truth.position_angle_deg) % np.pi
            ),
        }
        held = {source: arms_in_mask(truth, mask) for source, mask in masks.items()}
        held_any = {source: arms_in_mask(truth, level[0]) for source, level in levels.items()}
        for source, mask in masks.items():
            agreement = agreement_map(levels[source])
            for how, geometry in geometries.items():
                count = count_arms(agreement, geometry)
                _, summary = measure_arms(mask, galaxy.image, geometry=geometry, count=count)
                alone = count_arms(mask, geometry)  # the same counter on the th mask alone
                record.update(
                    {
                        f"{source}, {how}_n": summary.n_arms,
                        f"{source}, {how}_pitch": summary.pitch_deg,
                        f"{source}, {how}_chirality": summary.chirality,
                        f"{source}, {how}_count": summary.count,
                        f"{source}, {how}_count_alone": alone,
                        f"{source}, {how}_drawn": bool(mask.any()),
                        f"{source}, {how}_held": held[source],
                        f"{source}, {how}_held_any": held_any[source],
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
        "count right, segments (all / spirals / drawn) | count right, ARM_COUNT (spirals / drawn) | "
        f"count right, on the th={args.threshold} mask alone (drawn) | drawn masks holding every arm "
        f"(th={args.threshold} / any level) | ARM_COUNT = arms drawn at any level | "
        "winding accuracy | centre within 5 px | median axis-ratio / angle error |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for source, r in results.items():
        print(
            f"| {source} | {r['spirals']} ({r['spirals_drawn']}, {r['spirals_with_arms_found']}) | "
            f"{r['median_abs_pitch_error_deg']:.1f} deg"
            f" | {r['arm_count_accuracy']:.2f} / {r['arm_count_accuracy_spirals']:.2f} / "
            f"{r['arm_count_accuracy_drawn']:.2f} | {r['count_accuracy_spirals']:.2f} / "
            f"{r['count_accuracy_drawn']:.2f} | {r['count_alone_accuracy_drawn']:.2f} | "
            f"{r['all_arms_in_mask_drawn']:.2f} / {r['all_arms_at_any_level_drawn']:.2f} | "
            f"{r['count_accuracy_vs_arms_drawn']:.2f} | {r['chirality_accuracy']:.2f} | "
            f"{r['centre_within_5px']:.2f} | {r['median_axis_ratio_error']:.3f} / "
            f"{r['median_angle_error_deg']:.1f} deg |"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
