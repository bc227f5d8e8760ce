"""Bars: measured against the generator's truth, and what a second structure costs the network.

1. For the galaxies of a prepared synthetic dataset: the bar measured (:func:`galseg.bars.measure_bar`)
   on the volunteers' bar mask (votes >= th at full resolution) and, with ``--run`` (trained with
   ``--target both`` or ``bar``), on the model's mask, with the disc geometry measured from the
   image and the volunteers' centre and star clicks (never the generator's). Per source and
   threshold, over the truly barred galaxies where a bar is found: Pearson r of measured against
   true length (as seen, end to end) and of the deprojected lengths, the share with the position
   angle within 10 degrees; and the share of barred galaxies found and of unbarred ones given a bar.
2. The cost of one network for arms and bar against the arms-only network (same preset and size,
   measured side by side in this run): inference and one training step per image.

    python benchmarks/bench_bars.py --dataset demo-output/dataset --run demo-output/run --n 600
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from galseg.arms import geometry_and_light
from galseg.bars import angle_difference_deg, measure_bar
from galseg.dataset import open_dataset
from galseg.gz3d import read_gz3d, volunteer_hints
from galseg.inference import load
from galseg.io import progress
from galseg.synthetic import truth_from_metadata
from galseg.train import TrainConfig, loss_and_correct
from galseg.unet import build


def summarise(rows: list[dict], source: str, th: int) -> dict:
    key = f"{source}_th{th}"
    barred = [r for r in rows if r["true_length"] > 0]
    plain = [r for r in rows if r["true_length"] == 0]
    found = [r for r in barred if np.isfinite(r[f"{key}_length"])]
    out = {
        "source": source,
        "th": th,
        "barred": len(barred),
        "found": len(found),
        "found_share": len(found) / len(barred) if barred else np.nan,
        "false_bar_share": float(np.mean([np.isfinite(r[f"{key}_length"]) for r in plain]))
        if plain
        else np.nan,
    }
    if len(found) >= 3:
        true_len = np.array([r["true_length"] for r in found])
        got_len = np.array([r[f"{key}_length"] for r in found])
        true_dep = np.array([r["true_deprojected"] for r in found])
        got_dep = np.array([r[f"{key}_deprojected"] for r in found])
        pa = angle_difference_deg([r["true_pa"] for r in found], [r[f"{key}_pa"] for r in found])
        out.update(
            length_r=float(np.corrcoef(true_len, got_len)[0, 1]),
            median_length_ratio=float(np.median(got_len / true_len)),
            deprojected_r=float(np.corrcoef(true_dep, got_dep)[0, 1]),
            pa_within_10deg=float(np.mean(pa <= 10)),
            median_pa_error_deg=float(np.median(pa)),
        )
    return out


def network_cost(preset: str, size: int, batch: int = 16, repeats: int = 12) -> dict:
    """Seconds per image, inference and training step, arms-only against arms-and-bar."""
    torch.manual_seed(0)
    x = torch.rand(batch, 3, size, size)
    votes = {
        "spiral": torch.randint(0, 8, (batch, size, size)),
        "both": torch.randint(0, 8, (batch, 2, size, size)),
    }
    nets = {}
    for target in ("spiral", "both"):
        config = TrainConfig(dataset="-", out="-", preset=preset, head="multi", target=target)
        args = config.model_args(config.thresholds)
        net = build(args)
        nets[target] = (net, args, torch.optim.Adam(net.parameters()))
    best = {(t, kind): np.inf for t in nets for kind in ("infer", "train")}
    for _ in range(repeats):  # interleaved, best of each: the machine's drift hits both alike
        for target, (net, args, optimizer) in nets.items():
            net.eval()
            with torch.inference_mode():
                start = time.perf_counter()
                net(x)
                best[target, "infer"] = min(best[target, "infer"], (time.perf_counter() - start) / batch)
            net.train()
            start = time.perf_counter()
            loss, _ = loss_and_correct(net(x), votes[target], args, args.thresholds)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            best[target, "train"] = min(best[target, "train"], (time.perf_counter() - start) / batch)
    return {f"{kind}_ms_per_image_{t}": 1000 * best[t, kind] for t in nets for kind in ("infer", "train")} | {
        f"{kind}_ratio_both_over_spiral": best["both", kind] / best["spiral", kind]
        for kind in ("infer", "train")
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, required=True, help="a prepared synthetic dataset")
    parser.add_argument(
        "--run", type=Path, default=None, help="a run that segments bars (else volunteers only)"
    )
    parser.add_argument("--n", type=int, default=600, help="galaxies to measure")
    parser.add_argument(
        "--split", default="test", help="test, train, or all (for a dataset the run never saw)"
    )
    parser.add_argument("--thresholds", default="1,3", help="vote thresholds to measure, e.g. 1,3")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/bench_bars.json"))
    args = parser.parse_args()
    thresholds = [int(t) for t in args.thresholds.split(",")]

    data = open_dataset(args.dataset)
    source_dir = Path(data.manifest["source_dir"])
    chosen = data.catalogue if args.split == "all" else data.catalogue[data.catalogue["SPLIT"] == args.split]
    predictor = load(args.run, device="cpu").only("bar") if args.run else None
    sources = ["volunteers"] + (["model"] if predictor else [])
    rows = []
    for row in progress(chosen[: args.n], desc="bars"):
        galaxy = read_gz3d(source_dir / row["SOURCE_FILE"], outlines=False)
        truth = truth_from_metadata(galaxy.metadata)
        if truth is None:
            raise SystemExit(f"{row['SOURCE_FILE']}: not a synthetic galaxy, no truth to compare with")
        centre, stars = volunteer_hints(galaxy)
        geometry, light = geometry_and_light(galaxy.image, centre=centre, stars=stars)
        record = {
            "mangaid": galaxy.mangaid,
            "true_length": truth.bar_length_px if truth.barred else 0.0,
            "true_pa": truth.bar_pa_deg,
            "true_deprojected": truth.bar_deprojected_length_px,
        }
        masks = {"volunteers": {th: galaxy.bar_votes >= th for th in thresholds}}
        if predictor is not None:
            p = predictor.predict_image(galaxy.image)
            masks["model"] = {th: p[predictor.thresholds.index(th)] > 0.5 for th in thresholds}
        for source, by_th in masks.items():
            for th, mask in by_th.items():
                bar = measure_bar(mask, geometry, light=light)
                record[f"{source}_th{th}_length"] = bar.length_px
                record[f"{source}_th{th}_pa"] = bar.position_angle_deg
                record[f"{source}_th{th}_deprojected"] = bar.deprojected_length_px
        rows.append(record)

    summary = [summarise(rows, source, th) for source in sources for th in thresholds]
    cost = network_cost(
        predictor.config["preset"] if predictor else "small", predictor.size if predictor else data.size
    )
    print(f"{len(rows)} galaxies ({args.split}), {sum(r['true_length'] > 0 for r in rows)} barred")
    print(
        "| source | th | barred found | unbarred given a bar | length r | deprojected r | PA within 10 deg |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for s in summary:
        print(
            f"| {s['source']} | {s['th']} | {s['found']}/{s['barred']} | {s['false_bar_share']:.0%} | "
            f"{s.get('length_r', np.nan):.3f} | {s.get('deprojected_r', np.nan):.3f} | "
            f"{s.get('pa_within_10deg', np.nan):.0%} |"
        )
    print(
        f"\nnetwork per image, arms+bar / arms only: inference {cost['infer_ratio_both_over_spiral']:.3f}x "
        f"({cost['infer_ms_per_image_both']:.1f} / {cost['infer_ms_per_image_spiral']:.1f} ms), "
        f"training step {cost['train_ratio_both_over_spiral']:.3f}x "
        f"({cost['train_ms_per_image_both']:.1f} / {cost['train_ms_per_image_spiral']:.1f} ms)"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"summary": summary, "cost": cost, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
