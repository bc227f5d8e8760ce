"""The real-galaxy check: labels read from the Galaxy Zoo tables, arm pixels matched to SpArcFiRe's
masks within a tolerance, and the summary a referee would read."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from galseg import GalsegError
from galseg.arms import DiscGeometry
from galseg.inference import CUT
from galseg.metrics import real_markdown, real_summary
from galseg.real import (
    ARM_NUMBER_ANSWERS,
    arm_auc,
    disc_radius,
    evaluate_real,
    highpass_map,
    inter_arm_disc,
    real_galaxies,
    ring_auc,
)

SIZE = 96


def _ring_arm(shift: int = 0) -> np.ndarray:
    """A thin arc standing in for an arm: a straight 3-pixel ribbon, moved ``shift`` px across."""
    mask = np.zeros((SIZE, SIZE), bool)
    mask[20:76, 55 + shift : 58 + shift] = True
    return mask


@pytest.fixture()
def real_folder(tmp_path) -> Path:
    """A folder laid out like shared/real: two SpArcFiRe galaxies (one weak) and three colour
    cutouts with Galaxy Zoo DECaLS votes (a spiral, a smooth galaxy, an edge-on disc)."""
    sparcfire = tmp_path / "sparcfire"
    sparcfire.mkdir()
    image = np.full((SIZE, SIZE), 40, np.uint8)
    for name in ("good", "weak"):
        Image.fromarray(image).save(sparcfire / f"{name}.png")
        Image.fromarray((_ring_arm() * 255).astype(np.uint8)).save(sparcfire / f"{name}_armmask.png")
    (sparcfire / "index.csv").write_text(
        "name,n_arcs,pa_alenWtd_avg_domChiralityOnly,chirality,weak,image,armmask\n"
        "good,3,-14.5,Z,0,good.png,good_armmask.png\n"
        "weak,1,20.0,S,1,weak.png,weak_armmask.png\n"
    )
    decals = tmp_path / "colour" / "gz_decals"
    decals.mkdir(parents=True)
    for name in ("Jspiral", "Jsmooth", "Jedge"):
        Image.fromarray(np.zeros((SIZE, SIZE, 3), np.uint8)).save(decals / f"{name}.png")
    columns = (
        "iauname,smooth-or-featured_smooth_fraction,smooth-or-featured_featured-or-disk_fraction,"
        "disk-edge-on_no_fraction,has-spiral-arms_yes_fraction"
    )
    (decals / "gz_decals_volunteers_5.csv").write_text(
        f"{columns}\nJspiral,0.1,0.9,0.9,0.9\nJsmooth,0.8,0.2,0.5,0.1\nJedge,0.2,0.8,0.1,0.2\n"
    )
    return tmp_path


@dataclass
class Oracle:
    """Marks SpArcFiRe's arm, shifted by ``shift`` pixels, in every image that holds one (the
    grey SpArcFiRe cutouts), and a blob in the DECaLS ones when ``blob``."""

    shift: int = 0
    blob: bool = False
    thresholds: tuple[int, ...] = (1, 3)
    size: int = 32
    cut: float = CUT
    level: float = 1.0  # the probability it gives the pixels it marks

    def predict_image(self, image: np.ndarray) -> np.ndarray:
        grey = image[0, 0, 0] == 40
        mask = _ring_arm(self.shift) if grey else np.zeros((SIZE, SIZE), bool)
        if self.blob and not grey:
            mask[40:50, 40:50] = True
        return self.level * np.stack([mask, mask]).astype(np.float32)

    def only(self, structure: str) -> Oracle:  # an arms-only predictor, as Predictor.only gives
        assert structure == "spiral"
        return self


def test_labels_come_from_the_votes(real_folder):
    kinds = {g.name: g.kind for g in real_galaxies(real_folder)}
    assert kinds == {
        "good": "spiral",
        "weak": "other",  # a weak SpArcFiRe mask is no reference
        "decals Jspiral": "spiral",
        "decals Jsmooth": "smooth",
        "decals Jedge": "other",
    }


def test_a_perfect_mask_scores_one_and_a_shifted_one_scores_by_the_tolerance(real_folder):
    perfect = real_summary(evaluate_real(Oracle(), real_folder, measure=False))
    row = perfect[perfect["TH"] == 3][0]
    assert row["N_REFERENCE"] == 1
    assert row["RECALL"] == pytest.approx(1.0) and row["PRECISION"] == pytest.approx(1.0)
    assert row["SPIRALS_WITH_ARMS"] == pytest.approx(0.5)  # the DECaLS spiral got nothing
    assert row["SMOOTH_WITH_ARMS"] == pytest.approx(0.0)
    # tolerance: 3 network pixels = 3 * 96 / 32 = 9 image pixels; 12 px away is a miss
    near = real_summary(evaluate_real(Oracle(shift=8), real_folder, measure=False))
    far = real_summary(evaluate_real(Oracle(shift=12), real_folder, measure=False))
    assert near[1]["RECALL"] > 0.9 and far[1]["PRECISION"] == pytest.approx(0.0)
    blobs = real_summary(evaluate_real(Oracle(blob=True), real_folder, measure=False))
    assert blobs[1]["SMOOTH_WITH_ARMS"] == pytest.approx(1.0) and blobs[1][
        "SPIRALS_WITH_ARMS"
    ] == pytest.approx(1.0)
    assert "| 3 | 1.00 / 1.00 | 1.00 / 1.00 |" in real_markdown(perfect)


def test_an_unsure_network_finds_the_arms_at_a_lower_cut(real_folder):
    """A network that gives the arm only P = 0.3 (under-confident, as synthetic-trained networks
    are on real images) marks nothing at the trained cut of 0.5, and the whole arm at 0.2."""
    trained = real_summary(evaluate_real(Oracle(level=0.3), real_folder, measure=False))
    lowered = real_summary(evaluate_real(Oracle(level=0.3, cut=0.2), real_folder, measure=False))
    assert trained[1]["RECALL"] == pytest.approx(0.0)
    assert trained[1]["SPIRALS_WITH_ARMS"] == pytest.approx(0.0)
    assert lowered[1]["RECALL"] == pytest.approx(1.0) and lowered[1]["PRECISION"] == pytest.approx(1.0)
    # both cut-offs scored from one prediction of each image: the same as one at a time
    both = evaluate_real(Oracle(level=0.3), real_folder, measure=False, cuts=[0.5, 0.2])
    for cut, alone in ((0.5, trained), (0.2, lowered)):
        together = real_summary(both[both["CUT"] == cut])
        for column in ("RECALL", "SPIRALS_WITH_ARMS", "SMOOTH_WITH_ARMS"):
            assert list(together[column]) == pytest.approx(list(alone[column]))
    with pytest.raises(GalsegError, match="CUT"):
        real_summary(both)


def test_arm_auc_ranks_arm_pixels_against_the_disc_between_them():
    """An L-shaped arm: a map bright on the arm ranks it above the disc inside the L's hull (1),
    one bright off the arm below it (0), a flat map or a whole-galaxy glow at chance (sky outside
    the hull does not count); a straight arm has no 'between'."""
    reference = np.zeros((64, 64), bool)
    reference[10:50, 10:13] = True
    reference[47:50, 10:50] = True
    yy, xx = np.mgrid[:64, :64]
    on_arm = reference.astype(float)
    glow = np.where((xx < 52) & (yy < 52), 0.8, 0.0)  # the whole galaxy bright, sky dark
    between = inter_arm_disc(reference, 3)
    assert arm_auc(on_arm, reference, between) == pytest.approx(1.0)
    assert arm_auc(1.0 - on_arm, reference, between) == pytest.approx(0.0)
    assert arm_auc(np.full((64, 64), 0.3), reference, between) == pytest.approx(0.5)
    assert arm_auc(glow, reference, between) == pytest.approx(0.5)
    straight = np.zeros((64, 64), bool)
    straight[10:50, 30:33] = True
    assert np.isnan(arm_auc(on_arm, straight, inter_arm_disc(straight, 3)))


def _two_arms() -> np.ndarray:
    """Two logarithmic spiral arms (pitch 20 deg, 5 px wide) about the image's middle."""
    y, x = np.mgrid[0:SIZE, 0:SIZE] - (SIZE - 1) / 2
    r, theta = np.hypot(x, y) + 1e-9, np.arctan2(y, x)
    mask = np.zeros((SIZE, SIZE), bool)
    for start in (0.0, np.pi):
        ridge = start + np.log(r / 6) / np.tan(np.radians(20))
        mask |= np.abs(np.angle(np.exp(1j * (theta - ridge)))) * r < 2.5
    return mask & (r > 8) & (r < 44)


def test_rings_of_the_disc_are_ellipses_of_its_geometry():
    inclined = DiscGeometry(x=40.0, y=30.0, axis_ratio=0.5, position_angle=np.pi / 2)  # major axis up
    radius = disc_radius((64, 96), inclined)
    assert radius[30, 40] == pytest.approx(0.0)
    assert radius[10, 40] == pytest.approx(20.0)  # 20 px along the major axis
    assert radius[30, 50] == pytest.approx(20.0)  # 10 px along the minor axis, foreshortened by 2


def test_brightness_that_falls_with_radius_ranks_arms_at_chance_within_rings():
    """A glow brighter towards the centre puts inner arms above outer gaps (the whole-disc AUC
    flatters it), but within a ring it cannot tell arm from gap; a map bright on the arms can."""
    arms = _two_arms()
    between = inter_arm_disc(arms, 3)
    radius = disc_radius(arms.shape, DiscGeometry((SIZE - 1) / 2, (SIZE - 1) / 2))
    glow = np.exp(-radius / 12)
    assert ring_auc(glow, arms, between, radius) == pytest.approx(0.5, abs=0.08)
    assert ring_auc(glow + arms, arms, between, radius) == pytest.approx(1.0)
    assert ring_auc(glow - arms, arms, between, radius) == pytest.approx(0.0)
    assert np.isnan(ring_auc(glow, np.zeros_like(arms), between, radius))


def test_the_image_less_its_smooth_light_ranks_faint_arms_better_than_brightness():
    """Arms 3% as bright as the disc's middle: within a ring the disc's own fall with radius
    blurs the brightness's ranking; the image less its smooth light ranks better,
    and on the disc alone it ranks nothing."""
    arms = _two_arms()
    between = inter_arm_disc(arms, 3)
    radius = disc_radius(arms.shape, DiscGeometry((SIZE - 1) / 2, (SIZE - 1) / 2))
    disc = np.exp(-radius / 12)
    image = np.repeat((disc + 0.03 * arms)[..., None], 3, axis=2)
    assert highpass_map(image).shape == arms.shape
    brightness = ring_auc(image.mean(axis=2), arms, between, radius)
    assert ring_auc(highpass_map(image), arms, between, radius) > brightness + 0.05
    assert ring_auc(highpass_map(disc), arms, between, radius) == pytest.approx(0.5, abs=0.1)


class TwoArmOracle(Oracle):
    """Marks two spiral arms in every image."""

    def predict_image(self, image: np.ndarray) -> np.ndarray:
        return np.stack([_two_arms(), _two_arms()]).astype(np.float32)


def test_the_real_summary_says_whether_masks_beat_the_images_brightness(real_folder):
    """The summary carries the same-radius ranking of network and brightness and how often the
    network wins, with an interval; the Markdown table shows them."""
    arms = (_two_arms() * 255).astype(np.uint8)
    Image.fromarray(arms).save(real_folder / "sparcfire" / "good_armmask.png")  # SpArcFiRe's: two arms
    rows = evaluate_real(TwoArmOracle(), real_folder)
    reference = rows[rows["REF_PX"] > 0]
    assert np.isfinite(reference["RING_AUC"]).all() and np.isfinite(reference["BRIGHTNESS_RING_AUC"]).all()
    summary = real_summary(rows[rows["TH"] == 1])
    row = summary[0]
    assert row["N_RING"] == 1 and row["RING_AUC"] == pytest.approx(1.0)  # the oracle marks the arm itself
    assert row["BEATS_BRIGHTNESS"] == pytest.approx(1.0)  # a flat grey image cannot rank it
    assert row["HIGHPASS_RING_AUC"] == pytest.approx(0.5)  # nor can a filter of it
    assert row["RING_AUC_LO"] <= row["RING_AUC"] <= row["RING_AUC_HI"]
    assert "network better" in real_markdown(summary) and "1 of 1" in real_markdown(summary)


@dataclass
class SpiralOracle(Oracle):
    """Marks two spiral arms at both levels in the colour cutouts."""

    def predict_image(self, image: np.ndarray) -> np.ndarray:
        if image[0, 0, 0] == 40:
            return super().predict_image(image)
        return np.stack([_two_arms(), _two_arms()]).astype(np.float32)


@pytest.mark.parametrize(("votes", "expected"), [("0.1,0.7,0.1,0,0,0.1", 2), ("0.1,0.2,0.1,0,0,0.6", -1)])
def test_the_arm_count_is_checked_against_galaxy_zoos_arm_number(real_folder, votes, expected):
    """Galaxy Zoo's most-voted answer to "how many spiral arms" (none where "can't tell" wins)."""
    table = real_folder / "colour" / "gz_decals" / "gz_decals_volunteers_5.csv"
    answers = ",".join(ARM_NUMBER_ANSWERS["decals"])  # one, two, three, four, more, can't tell
    header, *rows = table.read_text().splitlines()
    table.write_text(f"{header},{answers}\n{rows[0]},{votes}\n{rows[1]},0,0,0,0,0,0\n{rows[2]},0,0,0,0,0,0\n")
    y, x = np.mgrid[0:SIZE, 0:SIZE] - (SIZE - 1) / 2
    disc = (200 * np.exp(-np.hypot(x, y) / 12)).astype(np.uint8)  # a face-on disc to centre on
    Image.fromarray(np.repeat(disc[..., None], 3, axis=2)).save(table.parent / "Jspiral.png")
    arms = {g.name: g.n_arms for g in real_galaxies(real_folder)}
    assert arms["decals Jspiral"] == expected
    assert {n for name, n in arms.items() if name != "decals Jspiral"} == {-1}  # smooth, edge-on, SpArcFiRe
    summary = real_summary(evaluate_real(SpiralOracle(), real_folder))
    row = summary[summary["TH"] == 3][0]
    assert row["N_COUNT"] == (1 if expected > 0 else 0)
    if expected > 0:
        assert row["ARM_COUNT_AGREEMENT"] == pytest.approx(1.0)  # two arms marked, two voted
        assert "1 of 1 |" in real_markdown(summary)


def test_the_maps_figure_puts_each_runs_probabilities_beside_the_image(tmp_path):
    from galseg.plots import real_maps_figure

    arms = _two_arms()
    image = np.repeat((0.3 + 0.5 * arms)[..., None], 3, axis=2)
    one = real_maps_figure([image], [arms], {"a": [arms * 0.9]}, ["g"], tmp_path / "one.png")
    two = real_maps_figure(
        [image], [arms], {"a": [arms * 0.9], "b": [arms * 0.2]}, ["g"], tmp_path / "two.png"
    )
    with Image.open(one) as a, Image.open(two) as b:
        assert b.width > 1.15 * a.width and abs(b.height - a.height) < 0.2 * a.height  # a column per run
