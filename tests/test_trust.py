"""How much to trust a mask: the volunteer ceiling, calibration, test-time augmentation and
bootstrap intervals, each against numbers worked out by hand."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from galseg.gz3d import rasterise_outlines
from galseg.metrics import (
    Reliability,
    ceiling_counts,
    ceiling_per_galaxy,
    ceiling_table1,
    per_galaxy_table,
    table1,
    table1_intervals,
)
from galseg.predict import Predictor
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


@dataclass
class HandMadeGalaxy:
    """Three volunteers on a 10 x 10 image: A and B overlap on 12 pixels, C is elsewhere."""

    outlines = [[square(2, 5, 2, 5)], [square(2, 5, 3, 6)], [square(6, 8, 6, 8)]]

    @property
    def spiral_votes(self):
        return rasterise_outlines([p for v in self.outlines for p in v], (10, 10))

    def spiral_outlines(self):
        return self.outlines


def test_ceiling_protocol_gives_the_hand_computed_numbers():
    galaxy = HandMadeGalaxy()
    model = np.zeros((2, 10, 10))
    model[:, 2:6, 2:7] = 0.9  # the model marks A and B together (20 pixels)
    volunteer, model_counts = ceiling_counts(galaxy, model, (1, 2))
    # th=1, volunteer A against B or C (25 px): TP 12, FP 4, FN 13
    np.testing.assert_array_equal(volunteer[0, 0], [12, 4, 13, 71])
    np.testing.assert_array_equal(volunteer[0, 2], [0, 9, 20, 71])  # C against A or B: no overlap
    np.testing.assert_array_equal(model_counts[0, 2], [20, 0, 0, 80])  # the model is exactly A or B
    rows = ceiling_per_galaxy("hand", (1, 2), volunteer, model_counts)
    get = {(r["WHO"], r["TH"]): r for r in rows}
    assert get["volunteer", 1]["JACCARD"] == pytest.approx((12 / 29 + 12 / 29 + 0) / 3)
    assert get["volunteer", 1]["PRECISION"] == pytest.approx((12 / 16 + 12 / 16 + 0) / 3)
    assert get["model", 1]["JACCARD"] == pytest.approx((16 / 29 + 16 / 29 + 1) / 3)
    # th=2: only C's comparison has a consensus (A and B agree on 12 px); A's and B's are empty
    assert get["volunteer", 2]["N_BOTH"] == 1 and get["volunteer", 2]["JACCARD"] == 0.0
    assert get["model", 2]["N_BOTH"] == 1 and get["model", 2]["JACCARD"] == pytest.approx(12 / 20)
    assert get["volunteer", 2]["SHARE_BOTH_NONE"] == 0.0
    summary = ceiling_table1(rows)
    row = summary[(summary["WHO"] == "model") & (summary["TH"] == 1)][0]
    assert row["N_BOTH_ARMS"] == 1 and row["JACCARD_MEAN"] == pytest.approx((16 / 29 + 16 / 29 + 1) / 3)


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
