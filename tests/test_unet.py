"""The network: the paper's size, shape checks, and the ordinal head's nesting."""

from __future__ import annotations

import pytest
import torch

from galseg import GalsegError
from galseg.unet import build, count_parameters, preset_args, probabilities


def test_paper_preset_has_34_5_million_parameters():
    assert count_parameters(build(preset_args("paper"))) / 1e6 == pytest.approx(34.5, abs=0.1)


def test_small_preset_is_a_cpu_sized_net():
    assert 1.5e6 < count_parameters(build(preset_args("small"))) < 3e6


@pytest.mark.parametrize("size", [16, 48, 80])
def test_output_has_the_input_size(size):
    model = build(preset_args("tiny", depth=5))
    assert model(torch.zeros(2, 3, size, size)).shape == (2, 2, size, size)


def test_sizes_not_divisible_say_how_to_fix_them():
    model = build(preset_args("tiny", depth=5))
    with pytest.raises(GalsegError, match="divisible by 16; pad or resize to 112x128"):
        model(torch.zeros(1, 3, 100, 120))


def test_ordinal_masks_are_nested_for_every_pixel_of_random_inputs():
    torch.manual_seed(0)
    model = build(preset_args("tiny", head="ordinal"))
    # random weights scaled up so the raw outputs are far from zero and disagree wildly
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(5)
    for _ in range(5):
        p = probabilities(model(torch.randn(4, 3, 32, 32) * 3), "ordinal")
        assert p.shape == (4, 6, 32, 32)
        assert torch.all(p[:, 1:] <= p[:, :-1])
        masks = p > 0.5
        assert torch.all(masks[:, 1:] <= masks[:, :-1])
