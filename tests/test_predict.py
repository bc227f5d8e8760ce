"""Prediction on new images of every kind: masks on the input's own grid, WCS carried,
broken inputs reported, resumable runs, and torchrun sharding that changes nothing."""

from __future__ import annotations

import json

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
from astropy.io import fits
from astropy.table import Table

from galseg import GalsegError
from galseg.cli import main
from galseg.footprint import footprint, galaxy_region, outside_galaxy
from galseg.gz3d import find_gz3d_files, make_wcs, read_gz3d, wcs_header
from galseg.inference import REAL_CUT, load, load_ready
from galseg.inputs import expand_inputs
from galseg.outputs import read_catalogue
from galseg.predict import predict_files


@pytest.fixture(scope="module")
def inputs(gz3d_dir, tmp_path_factory):
    """One galaxy in every supported form, at sizes unlike the training size."""
    folder = tmp_path_factory.mktemp("inputs")
    gz3d = find_gz3d_files(gz3d_dir)[0]
    galaxy = read_gz3d(gz3d)
    image = galaxy.image[:70, :90]  # a non-square cutout: masks must come back 70 x 90
    wcs = make_wcs(150.0, 2.0, (70, 90))
    fits.PrimaryHDU(image[..., 0].astype(np.float32) * 3.0 + 100, header=wcs_header(wcs)).writeto(
        folder / "r_band.fits"
    )
    fits.PrimaryHDU(np.moveaxis(image, -1, 0).astype(np.float32), header=wcs_header(wcs)).writeto(
        folder / "cube.fits"
    )
    mpimg.imsave(folder / "cutout.png", image)
    mpimg.imsave(folder / "cutout.jpg", image)
    (folder / "broken.fits").write_bytes(b"SIMPLE  =                    T" + b"\0" * 100)
    listing = folder / "list.txt"
    listing.write_text(
        f"# one per line\n{gz3d}\nr_band.fits\ncube.fits\ncutout.png\ncutout.jpg\nbroken.fits\n"
    )
    return listing, galaxy, wcs


def test_every_input_kind_gives_masks_on_its_own_grid(trained_run, inputs, tmp_path, capsys):
    listing, galaxy, wcs = inputs
    out = tmp_path / "pred"
    status = main(
        [
            "predict",
            str(trained_run),
            str(listing),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--workers",
            "0",
            "--overlay",
        ]
    )
    assert status == 1  # one input was broken
    assert "5 images predicted, 1 failed" in capsys.readouterr().out
    catalogue = read_catalogue(out / "catalogue.ecsv")
    ok = catalogue[catalogue["ERROR"] == ""]
    assert len(ok) == 5 * 6 and set(ok["TH"]) == {1, 2, 3, 4, 5, 6}
    bad = catalogue[catalogue["ERROR"] != ""]
    assert len(bad) == 1 and "broken.fits" in bad["ERROR"][0]
    assert list(dict.fromkeys(catalogue["NAME"]))[0] == galaxy.mangaid  # GZ:3D inputs are named by MANGAID
    expected_shape = {"r_band": (70, 90), "cube": (70, 90), "cutout": (70, 90)}
    outputs = {(row["NAME"], row["SOURCE"][-4:]): row["OUTPUT"] for row in ok}
    assert len(set(outputs.values())) == 5  # cutout.png and cutout.jpg: one name, two outputs
    for (name, _), output in outputs.items():
        if name not in expected_shape:
            continue
        shape = expected_shape[name]
        with fits.open(out / output) as hdul:
            assert hdul["MASK_TH3"].data.shape == shape and hdul["MASK_TH3"].data.dtype == np.uint8
            assert hdul["PROB"].data.shape == (6, *shape)
            if name in ("r_band", "cube"):
                assert hdul["MASK_TH3"].header["CRVAL1"] == pytest.approx(150.0)
                assert hdul["MASK_TH3"].header["CD2_2"] == pytest.approx(wcs.wcs.cd[1, 1])
            else:
                assert "CRVAL1" not in hdul["MASK_TH3"].header
    with fits.open(next((out / "masks").glob("S007*.fits.gz"))) as hdul:
        hdul.verify("exception")  # galseg serialises these files itself: standard FITS, as astropy judges
        assert hdul["MASK_TH1"].data.shape == galaxy.image.shape[:2]
        assert hdul["MASK_TH1"].header["CRVAL1"] == pytest.approx(galaxy.wcs.wcs.crval[0])
        # the statistics agree with the stored masks
        stats = Table(hdul["STATS"].data)
        for row in stats:
            mask = hdul[f"MASK_TH{row['TH']}"].data
            assert row["ARM_PIXELS"] == mask.sum()
            assert row["ARM_FRACTION_IMAGE"] == pytest.approx(mask.mean())
    assert len(list((out / "overlays").glob("*.png"))) == 5
    # arm measurements: a column per galaxy and threshold, and one row per fitted arm
    assert set(ok["N_ARMS"]) <= set(range(0, 10)) and "CHIRALITY" in ok.colnames
    # the arm count: 1..6, or 0 where the mask is too small to say (always when empty); counted
    # on every level's mask at once, so one galaxy has one count wherever a level marks arms
    assert set(ok["ARM_COUNT"]) <= set(range(0, 7))
    assert not (ok["ARM_COUNT"][ok["ARM_PIXELS"] == 0]).any()
    for name in set(ok["NAME"]):
        marked = ok[(ok["NAME"] == name) & (ok["ARM_PIXELS"] > 0)]
        assert len(set(marked["ARM_COUNT"])) <= 1, name
    arms = read_catalogue(out / "arms.ecsv")
    assert set(arms.colnames) >= {
        "NAME",
        "TH",
        "ARM",
        "PITCH_DEG",
        "CHIRALITY",
        "LENGTH_ARCSEC",
        "LIGHT_FRACTION",
    }
    for row in ok[ok["N_ARMS"] > 0]:
        assert ((arms["NAME"] == row["NAME"]) & (arms["TH"] == row["TH"])).sum() == row["N_ARMS"]


def test_reruns_skip_finished_galaxies_and_retry_failures(trained_run, inputs, tmp_path):
    listing, _, _ = inputs
    out = tmp_path / "pred"
    predictor = load(trained_run, device="cpu")
    first = predict_files(predictor, [listing], out, workers=0, show_progress=False)
    stamps = {p: p.stat().st_mtime_ns for p in (out / "masks").iterdir()}
    second = predict_files(predictor, [listing], out, workers=0, show_progress=False)
    assert {p: p.stat().st_mtime_ns for p in (out / "masks").iterdir()} == stamps
    for column in ("NAME", "TH", "ARM_PIXELS", "ERROR"):
        assert list(first[column]) == list(second[column])


def test_a_second_predict_into_the_same_folder_is_refused_while_the_first_writes(
    trained_run, gz3d_dir, tmp_path, capsys
):
    """Two predicts into one --out would each end with a catalogue of their own inputs only
    (rows lost): while one writes, the other is refused in one line; after it, the folder is free."""
    from galseg.io import only_writer

    out = tmp_path / "shared"
    source = str(find_gz3d_files(gz3d_dir)[0])
    command = ["predict", str(trained_run), source, "--out", str(out), "--device", "cpu", "--workers", "0"]
    with only_writer(out, ".predict-rank0.lock", what="galseg predict"):  # the first, still writing
        assert main(command) == 2
        err = capsys.readouterr().err.strip()
        assert "another galseg predict is writing here now" in err and "\n" not in err
        assert not (out / "catalogue.ecsv").exists() and not list((out / "masks").glob("*"))
    assert main(command) == 0
    assert len(read_catalogue(out / "catalogue.ecsv")) == 6


def test_catalogue_formats(trained_run, inputs, tmp_path):
    listing, _, _ = inputs
    predictor = load(trained_run, device="cpu").select([3])
    for name in ("cat.csv", "cat.fits"):
        table = predict_files(
            predictor, [listing], tmp_path / "p", catalogue=name, workers=0, show_progress=False
        )
        back = read_catalogue(tmp_path / "p" / name)
        assert len(back) == len(table) == 6 and set(back["TH"][back["ERROR"] == ""]) == {3}
        # every format reads back with the documented types (CSV stores flags as words)
        assert back["HAS_ARMS"].dtype == bool and back["ARM_PIXELS"].dtype.kind == "i"
        assert list(back["HAS_ARMS"]) == list(table["HAS_ARMS"])
        assert back["CHIRALITY"].dtype.kind == "U" and back["PITCH_DEG"].dtype.kind == "f"


def test_notebook_api_returns_masks_for_an_array(trained_run, gz3d_dir):
    predictor = load(trained_run, device="cpu")
    image = read_gz3d(find_gz3d_files(gz3d_dir)[1]).image
    masks = predictor.masks(image)
    assert sorted(masks) == [1, 2, 3, 4, 5, 6]
    assert all(m.shape == image.shape[:2] and m.dtype == bool for m in masks.values())


def test_inputs_expand_from_folders_and_lists(inputs):
    listing, _, _ = inputs
    assert [p.name for p in expand_inputs([listing.parent])] == sorted(
        ["broken.fits", "cube.fits", "cutout.jpg", "cutout.png", "r_band.fits"]
    )
    assert len(expand_inputs([listing])) == 6


@pytest.mark.parametrize("codec", ["utf-16", "utf-32", "utf-8-sig"])
def test_list_files_saved_by_windows_editors_read_like_plain_ones(inputs, tmp_path, codec):
    listing, _, _ = inputs
    names = "# from Notepad\r\ncutout.png\r\ncube.fits\r\n"
    (listing.parent / f"win-{codec}.txt").write_bytes(names.encode(codec))
    assert expand_inputs([listing.parent / f"win-{codec}.txt"]) == [
        listing.parent / "cutout.png",
        listing.parent / "cube.fits",
    ]
    (tmp_path / "nul.txt").write_bytes(b"cutout.png\0\ncube.fits\n")
    with pytest.raises(GalsegError, match="nul.txt: the list holds NUL bytes"):
        expand_inputs([tmp_path / "nul.txt"])


def test_footprint_covers_the_galaxy_not_the_sky():
    y, x = np.mgrid[0:64, 0:64]
    galaxy = 200 * np.exp(-((x - 32) ** 2 + (y - 32) ** 2) / 50.0)
    image = np.clip(galaxy[..., None] + np.random.default_rng(0).normal(10, 2, (64, 64, 3)), 0, 255).astype(
        np.uint8
    )
    mask = footprint(image)
    # above the sky by 3 sigma of the 5x5-smoothed noise (2 / 5): out to 200 exp(-r^2/50) = 1.2
    expected_area = np.pi * 50 * np.log(200 / 1.2)
    assert mask[32, 32] and not mask[2, 2]
    assert 0.8 * expected_area < mask.sum() < 1.25 * expected_area


def test_a_mask_on_light_apart_from_the_galaxy_is_dropped_an_arm_running_past_it_is_kept():
    y, x = np.mgrid[0:96, 0:96]
    light = 200 * np.exp(-((x - 48) ** 2 + (y - 48) ** 2) / 60.0) + 250 * np.exp(
        -((x - 88) ** 2 + (y - 8) ** 2) / 4.0
    )
    noise = np.random.default_rng(1).normal(10, 2, (96, 96, 3))
    image = np.clip(light[..., None] + noise, 0, 255).astype(np.uint8)
    region = galaxy_region(image)
    assert region[48, 48] and not region[8, 88]  # the galaxy, not the star in the corner
    p = np.zeros((2, 96, 96), dtype=np.float32)
    p[:, 4:13, 84:93] = 0.9  # a blob on the star
    p[0, 47:50, 40:95] = 0.8  # an arm from the bulge out past the galaxy's footprint
    drop = outside_galaxy(p, region, cut=0.5)
    assert drop[8, 88] and drop.sum() == 81  # the star's blob, on every plane
    assert not drop[48, 94]  # the arm's end beyond the footprint stays: its piece reaches the galaxy
    assert outside_galaxy(p[:, :, :60], region[:, :60], cut=0.5) is None  # nothing apart: nothing dropped


@pytest.mark.slow
def test_torchrun_two_processes_equal_one_row_for_row(trained_run, gz3d_dir, tmp_path, torchrun):
    files = [str(p) for p in find_gz3d_files(gz3d_dir)[:7]]
    single = predict_files(
        load(trained_run, device="cpu"), files, tmp_path / "one", workers=0, show_progress=False
    )
    torchrun("predict", str(trained_run), *files, "--out", str(tmp_path / "two"), "--workers", "0")
    assert len(list((tmp_path / "two" / "parts").glob("rank*.ecsv"))) == 2
    double = read_catalogue(tmp_path / "two" / "catalogue.ecsv")
    assert len(double) == len(single) == 7 * 6
    for column in ("ORDER", "NAME", "TH", "HAS_ARMS", "ARM_PIXELS", "ARM_FRACTION_FOOTPRINT"):
        assert list(double[column]) == list(single[column]), column
    np.testing.assert_allclose(double["MEAN_ARM_PROBABILITY"], single["MEAN_ARM_PROBABILITY"], rtol=1e-5)


def test_an_exported_run_predicts_like_the_original_in_half_the_bytes(trained_run, gz3d_dir, tmp_path):
    from galseg.ready import export_run

    slim = export_run(trained_run, tmp_path / "slim", scores={"note": "test"})
    image = read_gz3d(find_gz3d_files(gz3d_dir)[1]).image
    original = load(trained_run, device="cpu").predict_image(image)
    exported = load(slim, device="cpu").predict_image(image)
    np.testing.assert_allclose(exported, original, atol=0.02)  # float16 weights
    assert (slim / "th3" / "best.pt").stat().st_size < 0.5 * (trained_run / "th3" / "best.pt").stat().st_size


def test_an_export_keeps_what_float16_cannot_hold(trained_run, gz3d_dir, tmp_path):
    """A batch-norm variance past float16's range (65,504) stays float32: as infinity it silenced
    a trained ready-model candidate (its arm probabilities 0.46 -> 0.0003)."""
    import shutil

    import torch

    from galseg.ready import export_run

    wide = tmp_path / "wide"
    shutil.copytree(trained_run, wide)
    for checkpoint in wide.glob("*/best.pt"):
        payload = torch.load(checkpoint, map_location="cpu", weights_only=False)
        model = payload["model"]
        bn = next(k[: -len(".running_var")] for k in model if k.endswith(".running_var"))
        model[f"{bn}.running_var"] *= 1e10  # the same function: variance x 1e10, scale x 1e5
        model[f"{bn}.weight"] *= 1e5
        torch.save(payload, checkpoint)
    image = read_gz3d(find_gz3d_files(gz3d_dir)[1]).image
    original = load(trained_run, device="cpu").predict_image(image)
    np.testing.assert_allclose(load(wide, device="cpu").predict_image(image), original, atol=1e-3)
    slim = export_run(wide, tmp_path / "slim")
    for checkpoint in slim.glob("*/best.pt"):
        kept = torch.load(checkpoint, map_location="cpu", weights_only=False)["model"][f"{bn}.running_var"]
        wide_var = torch.load(wide / checkpoint.parent.name / "best.pt", weights_only=False)["model"]
        assert kept.dtype == torch.float32
        torch.testing.assert_close(kept, wide_var[f"{bn}.running_var"])
    exported = load(slim, device="cpu").predict_image(image)
    np.testing.assert_allclose(exported, original, atol=0.02)


def test_exporting_over_a_model_never_leaves_none(trained_run, tmp_path, monkeypatch):
    """The new copy is swapped in by renames: stopped before or between them, a complete model is
    still found (issue: a kill during `galseg ready-model` left a user with none)."""
    from galseg import ready
    from galseg.train import RUN_FILE

    target = tmp_path / "ready_model"
    monkeypatch.setattr(ready, "READY_DIR", target)
    ready.export_run(trained_run, target, scores={"version": 1})
    assert ready.ready_run() == target and not list(tmp_path.glob(".ready_model*"))

    renames = []
    real_rename = type(target).rename

    def stop_after_first(self, to):
        renames.append(to)
        if len(renames) == 2:
            raise KeyboardInterrupt  # stopped between moving the old one aside and the new one in
        return real_rename(self, to)

    monkeypatch.setattr(type(target), "rename", stop_after_first)
    with pytest.raises(KeyboardInterrupt):
        ready.export_run(trained_run, target, scores={"version": 2})
    found = ready.ready_run()
    assert found != target and (found / RUN_FILE).is_file()
    assert json.loads((found / RUN_FILE).read_text())["scores"]["version"] in (1, 2)
    monkeypatch.setattr(type(target), "rename", real_rename)
    ready.export_run(trained_run, target, scores={"version": 3})  # the next export tidies up
    assert ready.ready_run() == target and not list(tmp_path.glob(".ready_model*"))


def test_the_ready_model_records_the_scores_of_the_weights_it_ships(tmp_path, monkeypatch):
    """`galseg ready-model` end to end, small: the Table 1 recorded with the model is the one its
    float16 weights give, not the training run's float32 ones."""
    from galseg import ready
    from galseg.evaluate import evaluate_run

    monkeypatch.setattr(ready, "READY_DIR", tmp_path / "ready_model")
    recipe = ready.ReadyRecipe(n=40, size=32, preset="tiny", epochs=1, batch_size=8, real_cut=0.35)
    shipped = ready.build_ready_model(tmp_path / "work", recipe=recipe, log=lambda line: None)
    assert shipped == tmp_path / "ready_model" and ready.ready_run() == shipped
    record = json.loads((shipped / "run.json").read_text())
    # trained in the recipe's world (galaxy 0 of seed 0 is a disc, whose bulge differs between worlds)
    from galseg.synthetic import WORLDS, file_name, synthesize

    made = read_gz3d(tmp_path / "work" / "gz3d" / file_name(0, 0)).image
    np.testing.assert_array_equal(made, synthesize(0, seed=0, world=WORLDS[recipe.world])[0].image)
    assert not np.array_equal(made, synthesize(0, seed=0, world=WORLDS["classic"])[0].image)
    # the cut chosen for these weights travels with them, and is what predict uses
    assert ready.ready_cut() == pytest.approx(0.35) and load_ready(device="cpu").cut == pytest.approx(0.35)
    weights = torch.load(shipped / "multi" / "best.pt", weights_only=True)["model"]
    assert {v.dtype for v in weights.values() if v.is_floating_point()} == {torch.float16}
    recorded = record["scores"]["synthetic_table1"]
    table1 = evaluate_run(shipped, full_resolution=False, human=False, show_progress=False, n_boot=10).table1
    assert [r["TH"] for r in recorded] == list(table1["TH"])
    for row, again in zip(recorded, table1, strict=True):
        assert row["N_BOTH_ARMS"] == again["N_BOTH_ARMS"]
        assert row["POOLED_IOU"] == pytest.approx(float(again["POOLED_IOU"]), abs=1e-9)
    # a model recorded before the cut travelled with it: the cut for networks trained on synthetic galaxies
    del record["scores"]["recipe"]["real_cut"]
    (shipped / "run.json").write_text(json.dumps(record))
    assert ready.ready_cut() == pytest.approx(REAL_CUT)


def test_predict_without_a_run_uses_the_ready_model_with_the_real_image_settings(
    gz3d_dir, tmp_path, capsys, monkeypatch
):
    from galseg import ready
    from galseg.inference import REAL_ZOOMS

    path = find_gz3d_files(gz3d_dir)[2]
    command = ["predict", str(path), "--out", str(tmp_path / "p"), "--device", "cpu", "--workers", "0"]
    assert main(command) == 0
    zooms = ",".join(map(str, REAL_ZOOMS))
    cut = ready.ready_scores()["recipe"]["real_cut"]  # the cut chosen for the shipped weights
    assert 0.05 < cut < 0.95
    assert f"ready model, --zoom {zooms} --cut {cut:g}" in capsys.readouterr().out
    catalogue = read_catalogue(tmp_path / "p" / "catalogue.ecsv")
    assert set(catalogue["ERROR"]) == {""} and sorted(set(catalogue["TH"])) == [1, 2, 3, 4, 5, 6]
    with fits.open(next((tmp_path / "p" / "masks").iterdir())) as hdul:
        assert hdul["MASK_TH3"].header["CUT"] == pytest.approx(cut)
    # told otherwise, it follows; and where no model is installed, one line says how to make it
    assert main([*command[:3], str(tmp_path / "q"), *command[4:], "--cut", "0.5", "--zoom", "1"]) == 0
    assert "--zoom 1.0 --cut 0.5" in capsys.readouterr().out
    monkeypatch.setattr(ready, "READY_DIR", tmp_path / "nothing")
    assert main(command) == 2
    err = capsys.readouterr().err.strip()
    assert "galseg ready-model" in err and "\n" not in err


def test_compiled_networks_see_one_batch_shape_and_answer_like_eager(trained_run, monkeypatch):
    """With --compile every batch is padded to the batch size (a compiled network recompiles for
    each new shape); the padding must not change any answer. torch.compile itself takes minutes
    here, so a recorder stands in for it: it sees every shape the compiled forward is given."""
    shapes = []

    def recorder(forward):
        def wrapped(x):
            shapes.append(tuple(x.shape))
            return forward(x)

        return wrapped

    images = np.random.default_rng(1).integers(0, 256, (11, 32, 32, 3), dtype=np.uint8)
    eager = load(trained_run, device="cpu").probabilities(images, batch_size=4)
    monkeypatch.setattr(torch, "compile", recorder)
    compiled = load(trained_run, device="cpu", compile=True)
    assert compiled.compiled
    np.testing.assert_allclose(compiled.probabilities(images, batch_size=4), eager, atol=1e-6)
    assert set(shapes) == {(4, 3, 32, 32)}  # 11 images: 4 + 4 + 3 padded to 4


def test_zoomed_views_are_put_back_where_they_came_from():
    from galseg.inference import combine_zooms, zoom_views

    image = np.zeros((40, 60, 3), dtype=np.uint8)
    image[10:30, 15:45] = 200  # the middle half, bright
    views = zoom_views(image, (1.0, 0.5), 16)
    assert views.shape == (2, 16, 16, 3)
    assert views[1].min() == 200 and views[0].min() == 0  # the crop is all galaxy
    answers = np.stack([np.full((1, 16, 16), 0.2), np.full((1, 16, 16), 0.9)]).astype(np.float32)
    combined = combine_zooms(answers, (1.0, 0.5), (40, 60))
    assert combined.shape == (1, 40, 60)
    np.testing.assert_allclose(combined[0, 10:30, 15:45], 0.9)  # the crop's answer, where it looked
    np.testing.assert_allclose(combined[0, :10], 0.2)  # elsewhere the whole image's answer
    np.testing.assert_allclose(combined[0, :, :15], 0.2)


def test_predict_with_zooms_writes_masks_on_the_input_grid(trained_run, gz3d_dir, tmp_path, capsys):
    path = find_gz3d_files(gz3d_dir)[0]
    out = tmp_path / "z"
    argv = ["predict", str(trained_run), str(path), "--out", str(out), "--workers", "0"]
    assert main([*argv, "--zoom", "1,0.6"]) == 0
    catalogue = read_catalogue(out / "catalogue.ecsv")
    with fits.open(out / catalogue["OUTPUT"][0]) as hdul:
        assert hdul["PROB"].data.shape == (6, 96, 96)
        expected = load(trained_run, device="cpu", zooms=(1.0, 0.6)).predict_image(read_gz3d(path).image)
        np.testing.assert_allclose(hdul["PROB"].data / 255, expected, atol=1 / 255 + 1e-6)
    assert main([*argv, "--zoom", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--zoom" in err and len(err.splitlines()) == 1


def test_a_lower_cut_marks_every_pixel_above_it_and_says_so(trained_run, gz3d_dir, tmp_path, capsys):
    """``--cut``: the masks, the catalogue's arm pixels and the file's header follow the chosen
    probability cut-off; the probabilities are the network's at either, less the marked pieces
    apart from the galaxy at that cut (galseg.footprint), as the Python API's. (The tiny test
    network is unsure everywhere: the cut is its median probability, which 0.5 never reaches.)"""
    path = find_gz3d_files(gz3d_dir)[0]
    image = read_gz3d(path).image
    low = round(float(np.median(load(trained_run, device="cpu").predict_image(image))), 6)
    assert 0 < low < 0.5
    argv = ["predict", str(trained_run), str(path), "--workers", "0", "--no-measure"]
    assert main([*argv, "--out", str(tmp_path / "trained")]) == 0
    assert main([*argv, "--out", str(tmp_path / "low"), "--cut", str(low)]) == 0
    pixels = {}
    for name, cut in (("trained", 0.5), ("low", low)):
        catalogue = read_catalogue(tmp_path / name / "catalogue.ecsv")
        pixels[name] = np.asarray(catalogue["ARM_PIXELS"])
        expected = load(trained_run, device="cpu", cut=cut).predict_image(image)
        with fits.open(tmp_path / name / catalogue["OUTPUT"][0]) as hdul:
            np.testing.assert_allclose(hdul["PROB"].data / 255, expected, atol=1 / 255 + 1e-6)
            for k, th in enumerate(range(1, 7)):
                mask = hdul[f"MASK_TH{th}"]
                assert mask.header["CUT"] == pytest.approx(cut)
                assert np.mean(mask.data.astype(bool) == (expected[k] > cut)) > 0.999
    assert (pixels["low"] >= pixels["trained"]).all() and (pixels["low"] > pixels["trained"]).any()
    assert main([*argv, "--out", str(tmp_path / "bad"), "--cut", "1.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--cut" in err and len(err.splitlines()) == 1
    with pytest.raises(GalsegError, match="--cut"):
        load(trained_run, device="cpu", cut=0.0)
