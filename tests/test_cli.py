"""The command line: each subcommand end to end, and user errors as one line with status 2."""

from __future__ import annotations

from galseg.cli import main
from galseg.gz3d import find_gz3d_files
from galseg.train import load_checkpoint


def test_synth_writes_files_and_a_preview(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path), "--n", "3", "--size", "64", "--workers", "1"]) == 0
    assert len(find_gz3d_files(tmp_path)) == 3
    assert (tmp_path / "preview.png").stat().st_size > 10_000
    assert "3 synthetic galaxies" in capsys.readouterr().out


def test_user_error_is_one_line_and_status_2(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path), "--n", "1", "--size", "8"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("galseg: error:") and "too small" in err and "\n" not in err


def test_evaluate_writes_table1_catalogues_and_figures(trained_run, dataset_dir, tmp_path, capsys):
    import numpy as np
    from astropy.table import Table

    out = tmp_path / "eval"
    assert (
        main(
            [
                "evaluate",
                str(trained_run),
                "--out",
                str(out),
                "--device",
                "cpu",
                "--tta",
                "--bootstrap",
                "200",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "| grid | th |" in printed and "| full | 6 |" in printed and "| train_size+tta | 3 |" in printed
    assert "Epoch chosen on: lowest loss on the validation galaxies" in printed
    assert "| th | galaxies | volunteers (panel A vs B) |" in printed
    assert "galaxies th=3: " in printed and "ranking by highest P, AUC" in printed
    assert "ECE plain th=3" in printed and "ECE tta th=3" in printed and "ECE plain vote fraction" in printed
    reference = Table.read(out / "human_reference.ecsv")
    assert sorted(reference["TH"]) == [1, 2, 3, 4, 5, 6]
    at_1 = reference[reference["TH"] == 1][0]
    assert (
        at_1["N_GALAXIES"] > 0 and 0 < at_1["HUMAN_JACCARD"] < 1 and at_1["HIGHER"] in ("model", "volunteers")
    )
    assert (out / "reliability.png").stat().st_size > 5_000
    per_galaxy = Table.read(out / "per_galaxy.ecsv")
    n_test = int((Table.read(dataset_dir / "catalogue.ecsv")["SPLIT"] == "test").sum())
    assert len(per_galaxy) == n_test * 6 * 3  # six thresholds; training grid, with TTA, full resolution
    assert set(per_galaxy["GRID"]) == {"train_size", "train_size+tta", "full"}
    assert ((per_galaxy["MAX_PROBABILITY"] >= 0) & (per_galaxy["MAX_PROBABILITY"] <= 1)).all()
    marked = per_galaxy[(per_galaxy["GRID"] == "train_size") & (per_galaxy["TH"] == 1)]["HAS_ARM_TRUTH"]
    auc = Table.read(out / "detection.ecsv")["AUC"][0]
    assert (0 <= auc <= 1) if 0 < marked.sum() < len(marked) else np.isnan(auc)
    for name in ("table1.md", "table1.ecsv", "detection.ecsv"):
        assert (out / name).stat().st_size > 100
    for figure in (
        "figure1_votes.png",
        "figure4_thresholds.png",
        "figure5_histograms_th3.png",
        "detection.png",
    ):
        assert (out / figure).stat().st_size > 5_000, figure


def test_train_writes_figure_3_per_threshold(dataset_dir, tmp_path):
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                str(dataset_dir),
                "--out",
                str(out),
                "--thresholds",
                "2,5",
                "--preset",
                "tiny",
                "--epochs",
                "2",
                "--steps-per-epoch",
                "1",
                "--batch-size",
                "4",
            ]
        )
        == 0
    )
    for unit in ("th2", "th5"):
        assert (out / unit / "curves.png").stat().st_size > 5_000
        assert (out / unit / "best.pt").is_file() and (out / unit / "last.pt").is_file()
    assert main(["evaluate", str(tmp_path / "nothing")]) == 2


def test_a_multi_threshold_run_evaluates_and_predicts_like_six_runs(dataset_dir, gz3d_dir, tmp_path):
    import numpy as np
    from astropy.io import fits
    from astropy.table import Table

    run = tmp_path / "multi"
    assert (
        main(
            [
                "train",
                str(dataset_dir),
                "--out",
                str(run),
                "--head",
                "multi",
                "--preset",
                "tiny",
                "--epochs",
                "2",
                "--steps-per-epoch",
                "2",
                "--batch-size",
                "8",
                "--normalise",  # each image on its own scale: recorded, so evaluate and predict follow
            ]
        )
        == 0
    )
    assert (run / "multi" / "best.pt").is_file() and not (run / "th3").exists()
    assert load_checkpoint(run / "multi" / "best.pt")[0].args.normalise
    assert main(["evaluate", str(run), "--out", str(tmp_path / "eval"), "--no-full-resolution"]) == 0
    assert sorted(set(Table.read(tmp_path / "eval" / "table1.ecsv")["TH"])) == [1, 2, 3, 4, 5, 6]
    files = [str(p) for p in find_gz3d_files(gz3d_dir)[:3]]
    assert main(["predict", str(run), *files, "--out", str(tmp_path / "pred"), "--workers", "0"]) == 0
    for path in (tmp_path / "pred" / "masks").iterdir():
        with fits.open(path) as hdul:
            masks = np.stack([hdul[f"MASK_TH{th}"].data for th in range(1, 7)]).astype(bool)
        assert np.all(masks[1:] <= masks[:-1])  # th+1 inside th, for every pixel
