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


def test_a_normalising_net_answers_the_same_whatever_the_display_brightness():
    # a survey that shows its sky grey and its galaxies dimmer is the same galaxy to the network
    torch.manual_seed(0)
    image = torch.rand(1, 3, 32, 32) * 0.3
    image[..., 12:20, 12:20] += 0.6  # a bright middle, so the bright end is the galaxy's
    shown_otherwise = 0.25 + 0.5 * image
    plain = build(preset_args("tiny", head="ordinal", batch_norm=False)).eval()
    normalising = build(preset_args("tiny", head="ordinal", batch_norm=False, normalise=True)).eval()
    with torch.no_grad():
        for p in plain.parameters():
            p.mul_(3)  # an untrained net answers little; scaled up, it answers to its input
        normalising.load_state_dict(plain.state_dict())  # no weights of its own: old runs load alike
        assert torch.allclose(normalising(image), normalising(shown_otherwise), atol=1e-4)
        assert not torch.allclose(plain(image), plain(shown_otherwise), atol=1e-2)


def test_each_image_gets_its_sky_at_0_and_its_bright_end_at_1():
    import numpy as np

    from galseg.unet import normalise_images

    torch.manual_seed(1)
    images = torch.rand(3, 3, 40, 40) * torch.tensor([0.2, 1.0, 3.0]).view(3, 1, 1, 1)  # three displays
    luminance = normalise_images(images).mean(1).flatten(1).numpy()
    for plane in luminance:
        assert np.quantile(plane, 0.5) == pytest.approx(0.0, abs=1e-5)
        assert np.quantile(plane, 0.995) == pytest.approx(1.0, abs=1e-5)
