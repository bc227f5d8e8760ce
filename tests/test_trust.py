"""How much to trust a mask: the human reference (two panels of volunteers), calibration,
test-time augmentation and bootstrap intervals, each against numbers worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from astropy.table import Table

from galseg.gz3d import rasterise_outlines
from galseg.inference import Predictor
from galseg.metrics import (
    Reliability,
    human_reference_table,
    panel_jaccards,
    panel_threshold,
    per_galaxy_table,
    table1,
    table1_intervals,
)
from galseg.unet import UNetArgs


def square(row0, row1, col0, col1):
    """Outline covering pixel centres rows row0..row1, columns col0..col1."""
    return np.array(
        [
            [col0 - 0.5, row0 - 0.5],
            [col1 + 0.5, row0 - 0.5],
            [col1 + 0.5, row1 + 0.5],
            [col0 - 0.5, row1 + 0.5],
        ]
    )


def test_panel_thresholds_ask_the_same_share_of_people():
    assert panel_threshold(3, 7, 15) == 1  # 3/15 of 7 people is 1.4
    assert panel_threshold(3, 8, 15) == 2  # 1.6
    assert panel_threshold(1, 7, 15) == 1  # never below one person
    assert panel_threshold(6, 8, 15) == 3  # 3.2


def test_panels_give_the_hand_computed_jaccards():
    """Two volunteers overlapping on 12 of their 16 pixels: whichever is panel B, panel A scores
    12 / 20; a model marking their union (20 pixels) scores 16 / 20."""
    x = rasterise_outlines([square(2, 5, 2, 5)], (10, 10))
    y = rasterise_outlines([square(2, 5, 3, 6)], (10, 10))
    union = (x + y) > 0
    human, model = panel_jaccards(np.stack([x, y]), np.stack([union] * 3), (1, 2, 4), n_splits=4)
    np.testing.assert_allclose(human[:2], 12 / 20)
    np.testing.assert_allclose(model[:2], 16 / 20)
    assert np.isnan(human[2]).all() and np.isnan(model[2]).all()  # 4 of 2 is 2 of 1: nobody


def test_an_empty_model_scores_zero_on_the_same_galaxies_as_the_panel():
    x = rasterise_outlines([square(2, 5, 2, 5)], (10, 10))
    human, model = panel_jaccards(np.stack([x, x, x, x]), np.zeros((1, 10, 10), bool), (1,), n_splits=3)
    np.testing.assert_allclose(human, 1.0)
    np.testing.assert_allclose(model, 0.0)


def test_human_reference_table_ratio_interval_and_verdict():
    rows = Table(
        {
            "MANGAID": ["a", "b", "c", "d"],
            "TH": [3, 3, 3, 3],
            "HUMAN_JACCARD": [0.5, 0.4, 0.6, np.nan],
            "MODEL_JACCARD": [0.6, 0.5, 0.6, 0.9],
        }
    )
    table = human_reference_table(rows, n_boot=300)
    row = table[0]
    assert row["N_GALAXIES"] == 3  # the galaxy without a panel reference is left out of both
    assert row["HUMAN_JACCARD"] == pytest.approx(0.5) and row["MODEL_JACCARD"] == pytest.approx(1.7 / 3)
    assert row["RATIO"] == pytest.approx(1.7 / 1.5)
    lo, hi = row["RATIO_CI"]
    assert lo <= row["RATIO"] <= hi and row["HIGHER"] == "model"


def test_calibrated_predictor_has_ece_near_zero_and_a_biased_one_does_not():
    rng = np.random.default_rng(0)
    p = rng.random(200_000)
    calibrated, biased = Reliability(), Reliability()
    calibrated.add(p, rng.random(p.size) < p)
    biased.add(p, rng.random(p.size) < p**2)  # says p when the truth is p squared
    assert calibrated.ece < 0.01
    assert biased.ece > 0.1
    np.testing.assert_allclose(calibrated.frequency, calibrated.confidence, atol=0.02)


class _PixelModel(torch.nn.Module):
    """A stand-in network: P(arm) = the red channel (an equivariant identity), or that times a
    left-to-right ramp (not equivariant), through the binary head's softmax."""

    def __init__(self, ramp: bool):
        super().__init__()
        self.args = UNetArgs(head="binary")
        self.ramp = ramp

    def forward(self, x):
        p = x[:, 0].clamp(1e-4, 1 - 1e-4)
        if self.ramp:
            p = p * torch.linspace(0.2, 1.0, x.shape[-1])
        return torch.stack([torch.zeros_like(p), torch.log(p / (1 - p))], dim=1)


def _predictor(model):
    return Predictor(
        run=None,
        units=[(model, (3,))],
        thresholds=(3,),
        size=16,
        head="binary",
        device=torch.device("cpu"),
        config={},
    )


def test_tta_of_an_equivariant_identity_model_returns_the_input():
    images = np.random.default_rng(1).integers(1, 255, (3, 16, 16, 3), dtype=np.uint8)
    mean, spread = _predictor(_PixelModel(ramp=False)).tta_probabilities(images)
    np.testing.assert_allclose(mean[:, 0], images[..., 0] / 255.0, atol=1e-5)
    assert spread.max() < 1e-5
    # a network that is not equivariant disagrees with itself across the eight orientations
    _, spread = _predictor(_PixelModel(ramp=True)).tta_probabilities(images)
    assert spread.mean() > 0.02


def test_bootstrap_intervals_contain_the_estimate_and_vanish_without_scatter():
    rng = np.random.default_rng(2)
    tp = rng.integers(1, 50, 200)
    counts = np.stack([tp, rng.integers(0, 50, 200), rng.integers(0, 50, 200), np.full(200, 1000)], axis=1)
    per = per_galaxy_table(np.array([f"g{i}" for i in range(200)]), 3, "train_size", counts)
    ci = table1_intervals(per, n_boot=500)[0]
    point = table1(per)[0]
    lo, hi = ci["JACCARD_MEAN_CI"]
    assert lo < point["JACCARD_MEAN"] < hi and hi - lo < 0.1
    same = per_galaxy_table(
        np.array([f"g{i}" for i in range(50)]), 3, "train_size", np.tile([[10, 5, 5, 80]], (50, 1))
    )
    lo, hi = table1_intervals(same, n_boot=200)[0]["JACCARD_MEAN_CI"]
    assert lo == pytest.approx(0.5) and hi == pytest.approx(0.5)
