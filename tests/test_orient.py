"""The canonical orientation: a mirrored galaxy gets the mirrored masks and the opposite winding."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

from galseg.arms import Arm, DiscGeometry, spiral_curve
from galseg.dataset import DIHEDRAL
from galseg.gz3d import find_gz3d_files, read_gz3d
from galseg.inference import load_ready
from galseg.inputs import InputImage
from galseg.orient import arm_back, canonical, geometry_back, point, point_back, turn, turn_back, turn_source
from galseg.predict import predict_files
from galseg.synthetic import write_synthetic


@pytest.mark.parametrize("orientation", DIHEDRAL)
def test_every_turn_of_an_image_reaches_the_same_canonical_image(orientation):
    image = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    turned = np.ascontiguousarray(turn(image, orientation))
    np.testing.assert_array_equal(turn(turned, canonical(turned)), turn(image, canonical(image)))
    np.testing.assert_array_equal(turn_back(turned, orientation), image)


@pytest.mark.parametrize("orientation", DIHEDRAL)
def test_points_land_on_the_same_pixel_of_the_turned_image(orientation):
    image = np.arange(5 * 7).reshape(5, 7)
    turned = turn(image, orientation)
    y, x = np.mgrid[0:5, 0:7]
    tx, ty = point(orientation, x, y, image.shape)
    np.testing.assert_array_equal(turned[ty.astype(int), tx.astype(int)], image)
    bx, by = point_back(orientation, tx, ty, image.shape)
    np.testing.assert_allclose(bx, x)
    np.testing.assert_allclose(by, y)


@pytest.mark.parametrize("orientation", DIHEDRAL)
@pytest.mark.parametrize("position_angle", [0.3, 2.9])
def test_an_arm_turned_back_is_the_same_curve_on_the_original(orientation, position_angle):
    shape = (60, 80)
    original_turned = point(orientation, 30.0, 25.0, shape)
    turned = DiscGeometry(*map(float, original_turned), axis_ratio=0.6, position_angle=position_angle)
    arm = Arm(20.0, 1.0, "Z", 200.0, 4.0, 30.0, 60.0, np.nan, 100, 0.1, theta0=0.7, slope=2.5)
    original = geometry_back(orientation, turned, shape)
    back = arm_back(orientation, arm, turned, original)
    x, y = spiral_curve(arm, turned).T
    expected = np.stack(point_back(orientation, x, y, shape), axis=1)
    np.testing.assert_allclose(spiral_curve(back, original), expected, atol=1e-9)
    assert (back.chirality != arm.chirality) == bool(orientation[1])
    assert 0 <= original.position_angle < np.pi


MIRRORS = {"lr": lambda a: a[:, ::-1], "ud": lambda a: a[::-1], "transposed": lambda a: a.swapaxes(0, 1)}
MIRRORED_ANGLE = {"lr": lambda deg: -deg, "ud": lambda deg: -deg, "transposed": lambda deg: 90 - deg}


@pytest.fixture(scope="module")
def mirrored_spirals(tmp_path_factory):
    """Five synthetic spirals (128 px) as PNGs, each beside its three mirror images."""
    root = tmp_path_factory.mktemp("mirrors")
    list(write_synthetic(root / "gz3d", n=20, seed=3, size=128, workers=1))
    folder = root / "in"
    folder.mkdir()
    spirals = [g for g in map(read_gz3d, find_gz3d_files(root / "gz3d")) if g.spiral_votes.max() >= 3][:5]
    assert len(spirals) == 5
    for k, galaxy in enumerate(spirals):
        Image.fromarray(galaxy.image).save(folder / f"g{k}.png")
        for name, mirror in MIRRORS.items():
            Image.fromarray(np.ascontiguousarray(mirror(galaxy.image))).save(folder / f"g{k}_{name}.png")
    return folder


@pytest.mark.parametrize("tta", [False, True])
def test_a_mirrored_spiral_gets_the_mirrored_masks_and_the_opposite_chirality(
    mirrored_spirals, tmp_path, tta
):
    out = tmp_path / "out"
    table = predict_files(
        load_ready(device="cpu"), [mirrored_spirals], out, workers=0, show_progress=False, tta=tta
    )
    rows = {(str(r["NAME"]), int(r["TH"])): r for r in table}
    measured = 0
    for (name, th), row in rows.items():
        if "_" in name:
            continue
        mask = fits.getdata(out / row["OUTPUT"], f"MASK_TH{th}")
        for mirror, flip in MIRRORS.items():
            other = rows[(f"{name}_{mirror}", th)]
            np.testing.assert_array_equal(fits.getdata(out / other["OUTPUT"], f"MASK_TH{th}"), flip(mask))
            assert other["ARM_PIXELS"] == row["ARM_PIXELS"] and other["ARM_COUNT"] == row["ARM_COUNT"]
            if np.isfinite(row["BAR_PA_DEG"]):
                expected = MIRRORED_ANGLE[mirror](row["BAR_PA_DEG"]) % 180
                assert abs((other["BAR_PA_DEG"] - expected + 90) % 180 - 90) < 1e-3
            if row["CHIRALITY"] or other["CHIRALITY"]:
                assert {str(row["CHIRALITY"]), str(other["CHIRALITY"])} == {"S", "Z"}, (name, mirror, th)
                measured += 1
    assert measured >= 30  # most spirals are measured at most thresholds: the test is not vacuous


@pytest.mark.parametrize("orientation", DIHEDRAL)
def test_an_input_and_its_volunteer_hints_turn_and_turn_back(orientation):
    image = np.random.default_rng(2).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    stars = np.array([[1.0, 2.0, 0.5], [8.0, 5.0, 1.0]])
    source = InputImage("g", image, None, "g.png", centre=(3.0, 4.0), stars=stars)
    turned = turn_source(source, orientation)
    for (x, y), (tx, ty) in zip([(3, 4), (1, 2), (8, 5)], [turned.centre, *turned.stars[:, :2]], strict=True):
        np.testing.assert_array_equal(turned.image[int(ty), int(tx)], image[y, x])
    back = turn_source(turned, orientation, back=True)
    np.testing.assert_array_equal(back.image, image)
    assert back.centre == pytest.approx(source.centre)
    np.testing.assert_allclose(back.stars, stars)
