"""The whole study on built-in synthetic galaxies, and a report a person wants to read.

synthesise -> prepare -> train -> evaluate -> predict on held-out galaxies -> report, each step
resumable (a rerun reuses what is finished). The report is one self-contained HTML page (figures
embedded) plus the same figures as PNG files beside it.
"""

from __future__ import annotations

import base64
import html
import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from galseg import __version__
from galseg.dataset import open_dataset, prepare
from galseg.evaluate import evaluate_run
from galseg.inference import CUT, REAL_CUT, REAL_ZOOMS, load
from galseg.io import progress
from galseg.metrics import (
    confusion,
    human_reference_markdown,
    pooled_iou,
    real_markdown,
    real_summary,
    scores,
    table1_markdown,
)
from galseg.plots import (
    evaluation_figures,
    figure_3_after_each_epoch,
    gz3d_preview,
    prediction_overlay,
    real_galaxies_figure,
)
from galseg.predict import predict_files
from galseg.real import evaluate_real, real_examples
from galseg.synthetic import write_synthetic
from galseg.train import TrainConfig, read_run, train


@dataclass(frozen=True)
class DemoSettings:
    """What the demo runs; ``quick`` is the smoke-test version (under two minutes)."""

    # 2,000 rather than the "about 3,000": on 2 CPU cores, 3,000 galaxies with epochs
    # enough to learn take over 20 minutes; --n 3000 runs them
    n: int = 2000
    galaxy_size: int = 525
    size: int = 128
    preset: str = "small"
    head: str = "multi"
    target: str = "both"  # arms and bar from one network (spiral alone with separate networks)
    epochs: int = 10  # four left it below the trivial baseline at th=3 once volunteers drew what they see
    batch_size: int = 16
    steps_per_epoch: int | None = None
    n_predict: int = 8
    seed: int = 0
    recipe: str = "galseg"  # train.RECIPES; "paper" reproduces the paper's optimisation and epoch choice

    @classmethod
    def quick(cls, **overrides) -> DemoSettings:
        return cls(**{"n": 160, "galaxy_size": 256, "size": 64, "epochs": 5, "batch_size": 8, **overrides})


def baseline_masks(images: np.ndarray) -> np.ndarray:
    """The trivial baseline: every pixel brighter than the image's median is 'arm'."""
    grey = images.astype(np.float32).mean(axis=-1)
    return grey > np.median(grey.reshape(len(grey), -1), axis=1)[:, None, None]


def baseline_comparison(dataset: Path, per_galaxy, threshold: int = 3) -> dict:
    """Jaccard of the model and of the baseline at ``threshold`` on the same test galaxies: those
    where the volunteers mark arms (an empty prediction scores 0 there, so nothing is left out)."""
    data = open_dataset(dataset)
    rows = data.indices("test")
    votes = np.asarray(data.array("spiral")[rows])
    truth = votes >= threshold
    has_arms = truth.reshape(len(truth), -1).any(axis=1)
    base = confusion(truth, baseline_masks(np.asarray(data.array("images")[rows])))
    model = per_galaxy[(per_galaxy["GRID"] == "train_size") & (per_galaxy["TH"] == threshold)]
    model_counts = np.stack([model[c] for c in ("TP", "FP", "FN", "TN")], axis=1)
    return {
        "threshold": threshold,
        "galaxies": int(has_arms.sum()),
        "model_jaccard": float(np.mean(scores(model_counts)["jaccard"][has_arms]))
        if has_arms.any()
        else np.nan,
        "baseline_jaccard": float(np.mean(scores(base)["jaccard"][has_arms])) if has_arms.any() else np.nan,
        "model_pooled_iou": pooled_iou(model_counts),
        "baseline_pooled_iou": pooled_iou(base),
    }


def _human_verdict(table) -> str:
    """One sentence per threshold, plainly: who agrees better with panel B."""
    lines = []
    for r in table:
        lo, hi = r["RATIO_CI"]
        if r["HIGHER"] == "model":
            verdict = "the model agrees with panel B more closely than panel A does"
        elif r["HIGHER"] == "volunteers":
            verdict = "panel A (volunteers) agrees with panel B more closely than the model does"
        else:
            verdict = "no comparison"
        lines.append(
            f"<li>th = {r['TH']}: {verdict} (Jaccard {r['MODEL_JACCARD']:.3f} against "
            f"{r['HUMAN_JACCARD']:.3f}; ratio {r['RATIO']:.2f}, 95% interval {lo:.2f}-{hi:.2f}).</li>"
        )
    return "<ul>" + "".join(lines) + "</ul>"


def run_demo(
    out: str | os.PathLike[str],
    settings: DemoSettings,
    *,
    real: str | os.PathLike[str] | None = None,
    log=print,
) -> Path:
    """Run every stage into ``out`` and return the path of the HTML report. With ``real`` (a
    folder like ``shared/real``) the network is also checked on real galaxies, beside the
    synthetic ones."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    def stage(name: str):
        timings[name] = time.perf_counter()
        log(f"== {name}")

    def done(name: str) -> None:
        timings[name] = time.perf_counter() - timings[name]

    s = settings
    stage("synthesise")
    gz3d = out / "gz3d"
    paths = list(
        progress(write_synthetic(gz3d, n=s.n, seed=s.seed, size=s.galaxy_size), total=s.n, desc="synth")
    )
    figures = out / "figures"
    gz3d_preview(paths[:8], figures / "synthetic_galaxies.png")
    done("synthesise")

    stage("prepare")
    dataset = out / "dataset"
    if not (dataset / "manifest.json").exists():
        prepare(gz3d, dataset, size=s.size, seed=s.seed, workers=os.cpu_count() or 1)
    done("prepare")

    stage("train")
    run = out / "run"
    config = TrainConfig(
        dataset=str(dataset.resolve()),
        out=str(run),
        preset=s.preset,
        head="multi" if s.head == "multi" else "binary",
        epochs=s.epochs,
        batch_size=s.batch_size,
        steps_per_epoch=s.steps_per_epoch,
        seed=s.seed,
        recipe=s.recipe,
        patience=max(2, s.epochs),
        target=s.target if s.head == "multi" else "spiral",
    )

    train(config, resume=(run / "run.json").exists(), log=log, on_epoch=figure_3_after_each_epoch(s.preset))
    done("train")

    stage("evaluate")
    predictor = load(run)
    evaluation = evaluate_run(run, out=run / "evaluation", predictor=predictor)
    evaluation_figures(evaluation, figures)
    comparison = baseline_comparison(dataset, evaluation.per_galaxy)
    bars = None
    if "bar" in predictor.structures:
        bars = evaluate_run(run, out=run / "evaluation" / "bar", predictor=predictor, structure="bar")
        evaluation_figures(bars, figures / "bar")
    done("evaluate")

    stage("predict")
    data = open_dataset(dataset)
    # the first test galaxies in catalogue order (files sorted by name, so in effect at random):
    # picking those with most arm pixels would show the model at its best
    test_rows = data.catalogue[data.catalogue["SPLIT"] == "test"]
    chosen = [gz3d / name for name in test_rows["SOURCE_FILE"][: s.n_predict]]
    predicted = predict_files(predictor, chosen, out / "predictions", overlay=prediction_overlay, workers=0)
    done("predict")

    real_check = None
    if real is not None and Path(real).is_dir():
        stage("real galaxies")
        zoomed = replace(predictor, zooms=REAL_ZOOMS)
        both = evaluate_real(zoomed, real, cuts=[CUT, REAL_CUT])  # one prediction, two cut-offs
        zoom = f"--zoom {','.join(map(str, REAL_ZOOMS))}"
        real_check = {
            "--zoom 1.0": real_summary(evaluate_real(predictor, real)),
            zoom: real_summary(both[both["CUT"] == CUT]),
            f"{zoom} --cut {REAL_CUT:g}": real_summary(both[both["CUT"] == REAL_CUT]),
        }
        lowered = replace(zoomed, cut=REAL_CUT)
        real_galaxies_figure(**real_examples(lowered, real), path=figures / "real_galaxies.png")
        done("real galaxies")

    timings["total"] = sum(timings.values())
    report = write_report(out, settings, run, evaluation, comparison, predicted, timings, real_check, bars)
    log(f"report: {report} (stages took {timings['total']:.0f} s)")
    return report


# ----------------------------------------------------------------------------- the report


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(rows: list[dict], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(r[c]))}</td>" for c in columns) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _formatted(table) -> list[dict]:
    """An astropy table's rows as dicts, floats to two decimals."""
    return [
        {k: (f"{v:.2f}" if isinstance(v, float) else v) for k, v in zip(row.colnames, row, strict=True)}
        for row in table
    ]


def _markdown_table(markdown: str) -> str:
    lines = [line.strip().strip("|").split("|") for line in markdown.strip().splitlines()]
    header, body = [c.strip() for c in lines[0]], lines[2:]
    return _table([dict(zip(header, (c.strip() for c in row), strict=True)) for row in body], header)


SECTIONS = (
    "Settings",
    "Synthetic galaxies",
    "Training curves",
    "Table 1",
    "Metric histograms",
    "Six thresholds, one galaxy",
    "Predictions on held-out galaxies",
    "Real galaxies",
    "Detection",
    "Bars",
    "Human reference",
    "Calibration",
    "Baseline",
    "Timings",
)


def write_report(
    out: Path,
    settings: DemoSettings,
    run: Path,
    evaluation,
    comparison: dict,
    predicted,
    timings: dict[str, float],
    real_check=None,
    bars=None,
) -> Path:
    """One self-contained HTML page; its figures are also kept as PNG under ``out/figures``."""
    figures = out / "figures"
    record = read_run(run)
    units = list(record["units"])
    curves = []
    for unit in units:
        target = figures / f"curves_{unit}.png"
        target.write_bytes((run / unit / "curves.png").read_bytes())
        curves.append(_img(target, f"training curves {unit}"))
    overlays = sorted((out / "predictions" / "overlays").glob("*.png"))
    for path in overlays:
        (figures / f"prediction_{path.name}").write_bytes(path.read_bytes())
    detection_rows = _formatted(evaluation.detection)
    ok = predicted[predicted["ERROR"] == ""]
    prediction_rows = [
        {
            "galaxy": r["NAME"],
            "th": r["TH"],
            "has arms": bool(r["HAS_ARMS"]),
            "arm pixels": r["ARM_PIXELS"],
            "arm fraction of galaxy": f"{r['ARM_FRACTION_FOOTPRINT']:.3f}",
            "has bar": bool(r["HAS_BAR"]) if "HAS_BAR" in r.colnames else "-",
            "bar length (px)": f"{r['BAR_LENGTH_PX']:.0f}" if "BAR_LENGTH_PX" in r.colnames else "-",
        }
        for r in ok
        if r["TH"] in (1, 3, 6)
    ]
    th = comparison["threshold"]
    sections = {
        "Settings": _table(
            [
                {"setting": k, "value": v}
                for k, v in {
                    **asdict(settings),
                    "galseg": __version__,
                    "torch": record["environment"]["torch"],
                }.items()
            ],
            ["setting", "value"],
        ),
        "Synthetic galaxies": "<p>The first synthetic galaxies and their volunteer vote counts.</p>"
        + _img(figures / "synthetic_galaxies.png", "synthetic galaxies"),
        "Training curves": "<p>Loss and pixel accuracy per epoch on the training and the validation"
        " galaxies (the paper's Figure 3, which showed the test galaxies); the dashed line marks the"
        " epoch kept, chosen on the validation loss, so the test galaxies never chose anything.</p>"
        + "".join(curves),
        "Table 1": "<p>Mean ± standard deviation over test galaxies where volunteers and model both "
        "mark arms (the paper's Table 1), at the training size and on the full-resolution vote maps; in "
        "brackets the 95% bootstrap interval of the mean. Epoch chosen on: "
        + html.escape(evaluation.selection)
        + ".</p>"
        + _markdown_table(table1_markdown(evaluation.table1, evaluation.intervals)),
        "Metric histograms": _img(next(figures.glob("figure5_histograms_th*.png")), "metric histograms"),
        "Six thresholds, one galaxy": _img(figures / "figure4_thresholds.png", "six thresholds")
        + _img(figures / "figure1_votes.png", "vote counts"),
        "Predictions on held-out galaxies": '<div class="pairs">'
        + "".join(_img(p, p.stem) for p in overlays)
        + "</div>"
        + _table(prediction_rows, list(prediction_rows[0]) if prediction_rows else []),
        "Detection": "<p>Does the model find arms in the galaxies where volunteers drew them?</p>"
        + _table(detection_rows, list(evaluation.detection.colnames))
        + _img(figures / "detection.png", "detection"),
        "Bars": (
            "<p>The same network's bar head against the volunteers' bar outlines (GZ:3D HDU 4), on the "
            "same test galaxies: Table 1 for bars, detection of barred galaxies, and one galaxy at six "
            "thresholds (the white dashed outlines in the predictions above are the bar at th=3).</p>"
            + _markdown_table(table1_markdown(bars.table1, bars.intervals))
            + _table(_formatted(bars.detection), list(bars.detection.colnames))
            + _img(figures / "bar" / "figure4_thresholds.png", "bar at six thresholds")
            + _img(figures / "bar" / "detection.png", "bar detection")
            if bars is not None
            else "<p>(this run segments spiral arms only: train with <code>--target both</code>)</p>"
        ),
        "Real galaxies": (
            "<p>The same network on real SDSS and DECaLS cutouts (<code>shared/real</code>: SpArcFiRe's "
            "arm masks and Galaxy Zoo votes; never used for training). Arm recall and precision count "
            "a pixel within 3 network pixels of SpArcFiRe's arms. Compare with Table 1 above, on the "
            "synthetic test galaxies. First the images as given, then with their middle 60% also "
            "predicted larger (<code>galseg predict --zoom 1,0.6</code>), then with pixels marked above "
            f"a probability of {REAL_CUT:g} instead of {CUT:g} (<code>--cut</code>: a network trained on "
            "synthetic galaxies is under-confident on real ones; the figure shows this).</p>"
            + "".join(
                f"<p><code>{setting}</code></p>" + _markdown_table(real_markdown(t))
                for setting, t in real_check.items()
            )
            + _img(figures / "real_galaxies.png", "real galaxies")
            if real_check is not None
            else "<p>(no real cutouts given: run with <code>--real ../shared/real</code>)</p>"
        ),
        "Human reference": "<p>The volunteers of each test galaxy are split at random into two disjoint "
        "panels, ten times. Panel A's consensus (threshold scaled to its size) and the model's mask are "
        "both scored against panel B's consensus: the same galaxies, splits and reference, so the two "
        "Jaccards can be compared directly. Epoch chosen on: "
        + html.escape(evaluation.selection)
        + ".</p>"
        + (
            _markdown_table(human_reference_markdown(evaluation.human_reference))
            + _human_verdict(evaluation.human_reference)
            if evaluation.human_reference is not None
            else "<p>(the original GZ:3D files were not available)</p>"
        ),
        "Calibration": "<p>Observed frequency of votes &ge; th against the predicted probability, over all "
        "test pixels; ECE is the pixel-weighted mean gap.</p>"
        + _img(figures / "reliability.png", "reliability diagram")
        + _table(
            [
                {"variant": r["VARIANT"], "th": r["TH"], "ECE": f"{r['ECE']:.4f}"}
                for r in evaluation.ece_table()
            ],
            ["variant", "th", "ECE"],
        ),
        "Baseline": f"<p>Mean Jaccard at th={th} over the {comparison['galaxies']} test galaxies where "
        "volunteers mark arms, against a trivial baseline that calls every pixel brighter than the median "
        "an arm.</p>"
        + _table(
            [
                {
                    "method": "galseg",
                    "Jaccard": f"{comparison['model_jaccard']:.3f}",
                    "pooled IoU": f"{comparison['model_pooled_iou']:.3f}",
                },
                {
                    "method": "pixels above the median",
                    "Jaccard": f"{comparison['baseline_jaccard']:.3f}",
                    "pooled IoU": f"{comparison['baseline_pooled_iou']:.3f}",
                },
            ],
            ["method", "Jaccard", "pooled IoU"],
        ),
        "Timings": _table(
            [{"stage": k, "seconds": f"{v:.1f}"} for k, v in timings.items()],
            ["stage", "seconds"],
        ),
    }
    body = "".join(
        f'<section id="{name.lower().replace(" ", "-").replace(",", "")}"><h2>{html.escape(name)}</h2>'
        f"{content}</section>"
        for name, content in ((n, sections[n]) for n in SECTIONS)
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>galseg demo report</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}
img {{ max-width: 100%; margin: 0.4em 0; }}
table {{ border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }}
td, th {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
section {{ margin-bottom: 2em; }}
.pairs img {{ width: 49%; }}
</style></head>
<body><h1>galseg: spiral arms on synthetic GZ:3D galaxies</h1>
<p>{settings.n} synthetic galaxies, {settings.preset} preset, {
        "one network for all six thresholds" if settings.head == "multi" else "one network per threshold"
    }{" of arms and bar" if bars is not None else ""}, {settings.epochs} epochs at {settings.size} px.</p>
{body}
<script>
// lets a headless browser confirm that every figure decoded and every table is there
window.addEventListener("load", () => {{
  const images = [...document.images];
  const decoded = images.filter((im) => im.complete && im.naturalWidth > 0).length;
  document.title = `report ok: ${{decoded}}/${{images.length}} images, ${{document.querySelectorAll("table").length}} tables`;
}});
</script>
</body></html>
"""  # noqa: E501
    path = out / "report.html"
    path.write_text(page)
    (out / "demo.json").write_text(
        json.dumps({"settings": asdict(settings), "baseline": comparison, "timings": timings}, indent=1)
    )
    return path
