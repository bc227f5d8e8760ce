"""Bars: one network for arms and bar, bar measurements, and the generator's bar truth."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from astropy.io import fits
from skimage.draw import ellipse

from galseg.arms import DiscGeometry, disc_geometry
from galseg.bars import angle_difference_deg, measure_bar
from galseg.cli import main
from galseg.dataset import ArmDataset, augment_photometry, open_dataset
from galseg.gz3d import volunteer_hints
from galseg.outputs import read_catalogue
from galseg.synthetic import synthesize, truth_from_metadata
from galseg.train import loss_and_correct
from galseg.unet import UNet, preset_args


def _bar_mask(shape, centre, half_length, half_width, pa_deg):
    """An elliptical bar; ``pa_deg`` anticlockwise from x as displayed (y down)."""
    mask = np.zeros(shape, dtype=bool)
    rows, cols = ellipse(
        centre[1], centre[0], half_width, half_length, shape=shape, rotation=np.radians(pa_deg)
    )
    mask[rows, cols] = True
    return mask


def test_a_bar_is_measured_end_to_end_with_its_angle_and_deprojected():
    mask = _bar_mask((201, 201), (100, 100), 40, 8, 30)
    face_on = measure_bar(mask, DiscGeometry(100, 100, 1.0, 0.0))
    assert face_on.present and face_on.length_px == pytest.approx(81, abs=2)
    assert angle_difference_deg(face_on.position_angle_deg, 30) < 2
    assert face_on.axis_ratio == pytest.approx(0.2, abs=0.05)
    assert face_on.deprojected_length_px == pytest.approx(face_on.length_px, rel=1e-6)
    # the same bar on a disc inclined to axis ratio 0.5 along x: the bar's y extent is doubled
    tilted = measure_bar(mask, DiscGeometry(100, 100, 0.5, 0.0))
    expected = 81 * np.hypot(np.cos(np.radians(30)), 2 * np.sin(np.radians(30)))
    assert tilted.deprojected_length_px == pytest.approx(expected, rel=0.05)
    assert tilted.length_px == pytest.approx(face_on.length_px)


def test_the_bar_is_the_central_region_not_a_bigger_blob_elsewhere():
    mask = _bar_mask((201, 201), (100, 100), 20, 5, 120)
    mask[10:60, 140:190] = True  # a larger stray region far from the centre
    bar = measure_bar(mask, DiscGeometry(100, 100))
    assert bar.length_px == pytest.approx(41, abs=2)
    assert angle_difference_deg(bar.position_angle_deg, 120) < 3
    assert not measure_bar(np.zeros((50, 50), bool), DiscGeometry(25, 25)).present


def test_light_share_and_arcseconds():
    mask = _bar_mask((101, 101), (50, 50), 20, 4, 0)
    light = np.ones((101, 101))
    bar = measure_bar(mask, DiscGeometry(50, 50), light=light, arcsec_per_px=0.099)
    assert bar.light_fraction == pytest.approx(mask.sum() / light.size)
    assert bar.length_arcsec == pytest.approx(bar.length_px * 0.099)


def test_generator_bar_truth_matches_the_volunteers_and_the_measurement():
    """Synthetic barred galaxies: bar truth is written and read back, and the bar measured on
    the volunteers' th=3 mask with the geometry measured from the image (centre clicks) agrees."""
    checked = 0
    for index in range(60):
        galaxy, truth = synthesize(index, seed=11, size=256)
        if not truth.barred:
            assert truth.bar_length_px == 0
            continue
        assert truth_from_metadata(galaxy.metadata).bar_pa_deg == pytest.approx(truth.bar_pa_deg, abs=1e-3)
        assert truth.bar_length_px <= truth.bar_deprojected_length_px + 1e-6  # projection shortens
        mask = galaxy.bar_votes >= 3
        if mask.sum() < 20:
            continue  # too few volunteers drew it
        centre, stars = volunteer_hints(galaxy)
        bar = measure_bar(mask, disc_geometry(galaxy.image, centre=centre, stars=stars))
        assert angle_difference_deg(bar.position_angle_deg, truth.bar_pa_deg) < 10
        assert bar.length_px == pytest.approx(truth.bar_length_px, rel=0.35)
        checked += 1
    assert checked >= 4


def test_one_ordinal_head_per_structure_nested_in_threshold():
    net = UNet(preset_args("tiny", head="ordinal", structures=("spiral", "bar")))
    logits = net(torch.randn(2, 3, 16, 16))
    assert logits.shape == (2, 12, 16, 16)
    p = torch.sigmoid(logits).view(2, 2, 6, 16, 16)
    assert (p[:, :, 1:] <= p[:, :, :-1] + 1e-6).all()
    with pytest.raises(Exception, match="one structure"):
        UNet(preset_args("tiny", head="binary", structures=("spiral", "bar")))


def test_the_two_structure_loss_is_the_sum_of_the_single_ones():
    torch.manual_seed(0)
    both = preset_args("tiny", head="ordinal", structures=("spiral", "bar"))
    one = preset_args("tiny", head="ordinal")
    logits = torch.randn(3, 12, 8, 8)
    votes = torch.randint(0, 9, (3, 2, 8, 8))
    loss, correct = loss_and_correct(logits, votes, both, both.thresholds)
    arm, arm_ok = loss_and_correct(logits[:, :6], votes[:, 0], one, one.thresholds)
    bar, bar_ok = loss_and_correct(logits[:, 6:], votes[:, 1], one, one.thresholds)
    assert float(loss) == pytest.approx(float(arm + bar), rel=1e-5)
    assert int(correct) == int(arm_ok + bar_ok)


def test_dataset_gives_arm_and_bar_planes_moved_together(dataset_dir):
    data = open_dataset(dataset_dir)
    plain = ArmDataset(data, split="train", threshold=None, structures=("spiral", "bar"))
    image, votes = plain[0]
    row = data.indices("train")[0]
    assert votes.shape == (2, 32, 32)
    assert np.array_equal(votes[1].numpy(), np.asarray(data.array("bar")[row]))
    same = torch.stack([votes[0], votes[0]])
    torch.manual_seed(3)
    for _ in range(10):  # zoom in and out: both planes follow the same resampling
        _, moved = augment_photometry(image, same)
        assert torch.equal(moved[0], moved[1])


def test_train_evaluate_predict_arms_and_bar_with_one_network(dataset_dir, gz3d_dir, tmp_path, capsys):
    run = tmp_path / "run"
    common = ["--preset", "tiny", "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "8"]
    assert (
        main(["train", str(dataset_dir), "--out", str(run), "--head", "multi", "--target", "both", *common])
        == 0
    )
    assert main(["evaluate", str(run), "--bootstrap", "10", "--no-human-reference"]) == 0
    assert (run / "evaluation" / "table1.md").is_file()
    assert (run / "evaluation" / "bar" / "table1.md").is_file()
    assert (run / "evaluation" / "bar" / "figure4_thresholds.png").stat().st_size > 5_000
    out = tmp_path / "pred"
    inputs = sorted(gz3d_dir.glob("*.fits.gz"))[:3]
    assert main(["predict", str(run), *map(str, inputs), "--out", str(out), "--workers", "0"]) == 0
    catalogue = read_catalogue(out / "catalogue.ecsv")
    assert {"HAS_ARMS", "PITCH_DEG", "HAS_BAR", "BAR_LENGTH_PX", "BAR_PA_DEG"} <= set(catalogue.colnames)
    assert list(catalogue["HAS_BAR"]) == list(catalogue["BAR_PIXELS"] > 0)
    with fits.open(out / catalogue["OUTPUT"][0]) as hdul:
        assert hdul["BAR_TH3"].data.shape == hdul["MASK_TH3"].data.shape == (96, 96)
        assert hdul["BARPROB"].data.shape == hdul["PROB"].data.shape == (6, 96, 96)
        bar3 = hdul["BAR_TH3"].data.astype(bool)
        assert hdul["STATS"].data["BAR_PIXELS"][2] == bar3.sum()
    bars_only = tmp_path / "bars"
    assert main(["predict", str(run), str(inputs[0]), "--out", str(bars_only), "--target", "bar"]) == 0
    assert "HAS_ARMS" not in read_catalogue(bars_only / "catalogue.ecsv").colnames
    capsys.readouterr()


def test_target_mistakes_are_one_line_errors(trained_run, dataset_dir, gz3d_dir, tmp_path, capsys):
    assert main(["train", str(dataset_dir), "--out", str(tmp_path / "r"), "--target", "both"]) == 2
    assert "--head multi" in capsys.readouterr().err
    assert not (tmp_path / "r" / "run.json").exists()
    source = next(gz3d_dir.glob("*.fits.gz"))
    assert (
        main(["predict", str(trained_run), str(source), "--out", str(tmp_path / "p"), "--target", "bar"]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert "trained for spiral, not bar" in err and len(err.splitlines()) == 1
