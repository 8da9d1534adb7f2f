"""CMDSR's ConditionNet, its weight modulation and the support-set sampler, on tiny nets."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from f2n.errors import ConfigError
from f2n.nets import ConditionNet, ConditionNetConfig, RRDBNet, modulated_convs, modulated_weights
from f2n.runtime.support import SupportConfig, sample_support, support_boxes

TINY = dict(num_block=2, num_feat=8, num_grow_ch=4)


def tiny_pair(config: ConditionNetConfig = ConditionNetConfig(num_feat=8, num_layers=2)) -> tuple[RRDBNet, ConditionNet]:
    torch.manual_seed(0)
    model = RRDBNet(**TINY).eval()
    return model, ConditionNet(modulated_convs(model, config.modulate), config)


def randomise_head(condition_net: ConditionNet) -> None:
    with torch.no_grad():
        condition_net.head.weight.normal_(0, 0.5)
        condition_net.head.bias.normal_(0, 0.2)


def test_default_modulates_every_trunk_conv_and_nothing_else() -> None:
    model, condition_net = tiny_pair()
    names = [name for name, _ in condition_net.convs]
    assert len(names) == TINY["num_block"] * 3 * 5  # blocks x dense blocks x convs
    assert all(name.startswith("body.") and name.endswith(".weight") for name in names)
    assert condition_net.head.out_features == sum(model.get_parameter(name).shape[0] for name in names)
    tail = ConditionNet(modulated_convs(model, ("conv_up", "conv_hr")), ConditionNetConfig(num_feat=4, num_layers=1))
    assert [name for name, _ in tail.convs] == ["conv_up1.weight", "conv_up2.weight", "conv_hr.weight"]
    with pytest.raises(ValueError, match="no conv"):
        ConditionNet(modulated_convs(model, ("nothing.",)))


def test_weight_modulation_equals_output_modulation_on_one_conv() -> None:
    torch.manual_seed(1)
    conv = torch.nn.Conv2d(5, 6, 3, 1, 1)
    gamma, x = torch.randn(6) * 0.3, torch.rand(2, 5, 9, 7)
    modulated = F.conv2d(x, conv.weight * (1 + gamma).view(-1, 1, 1, 1), conv.bias, padding=1)
    bias = conv.bias.view(1, -1, 1, 1)
    expected = (conv(x) - bias) * (1 + gamma).view(1, -1, 1, 1) + bias
    torch.testing.assert_close(modulated, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(modulated, conv(x), atol=1e-3)  # γ really changed the output


def test_full_theta_prime_equals_per_channel_output_hooks() -> None:
    model, condition_net = tiny_pair()
    randomise_head(condition_net)
    support, x = torch.rand(4, 3, 16, 16), torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        weights = modulated_weights(model, condition_net, support)
        gamma = condition_net.coefficients(support)
        through_weights = functional_call(model, weights, (x,))

        def hook(name: str):  # (output − bias)·(1 + γ) + bias, per output channel
            def scale(module: torch.nn.Conv2d, _: tuple, output: torch.Tensor) -> torch.Tensor:
                bias = module.bias.view(1, -1, 1, 1)
                return (output - bias) * (1 + gamma[name]).view(1, -1, 1, 1) + bias
            return scale

        handles = [model.get_submodule(name.removesuffix(".weight")).register_forward_hook(hook(name))
                   for name, _ in condition_net.convs]
        try:
            through_hooks = model(x)
        finally:
            for handle in handles:
                handle.remove()
        plain = model(x)
    effect = (through_weights - plain).abs().max()  # small: the trunk is a 0.2-scaled residual
    assert effect > 1e-5
    assert (through_weights - through_hooks).abs().max() < 1e-3 * effect


def test_zero_head_gives_theta_bit_for_bit_and_a_trained_head_changes_only_modulated_convs() -> None:
    model, condition_net = tiny_pair()
    support = torch.rand(3, 3, 16, 16)
    base = dict(model.named_parameters())
    with torch.no_grad():
        untouched = modulated_weights(model, condition_net, support)
    assert untouched.keys() == base.keys()
    assert all(torch.equal(untouched[name], base[name]) for name in base)

    randomise_head(condition_net)
    with torch.no_grad():
        changed = modulated_weights(model, condition_net, support)
    modulated = {name for name, _ in condition_net.convs}
    differs = {name for name in base if not torch.equal(changed[name], base[name])}
    assert differs == modulated


def test_condition_depends_on_the_support_set() -> None:
    _, condition_net = tiny_pair()
    randomise_head(condition_net)
    flat, noisy = torch.full((2, 3, 16, 16), 0.5), torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(condition_net(flat), condition_net(noisy))


def half_flat(height: int = 64, width: int = 96) -> np.ndarray:
    """Left half noise, right half one grey."""
    image = np.full((height, width, 3), 0.5, np.float32)
    image[:, : width // 2] = np.random.default_rng(0).random((height, width // 2, 3), dtype=np.float32)
    return image


def test_support_is_seeded_inside_the_image_and_textured() -> None:
    image = half_flat()
    config = SupportConfig(patch=16, count=6)
    first, again = sample_support(image, config, seed=3), sample_support(image, config, seed=3)
    assert first.shape == (6, 3, 16, 16) and torch.equal(first, again)
    assert not torch.equal(first, sample_support(image, config, seed=4))
    corners, side = support_boxes(image, config, np.random.default_rng(3))
    assert side == 16 and (corners >= 0).all()
    assert (corners[:, 0] + side <= image.shape[0]).all() and (corners[:, 1] + side <= image.shape[1]).all()
    # Every patch lies in the noisy half: flat patches are skipped.
    assert (corners[:, 1] + side <= image.shape[1] // 2 + 2).all()


def test_support_of_a_photo_smaller_than_a_patch_and_of_a_flat_photo() -> None:
    small = np.random.default_rng(1).random((10, 13, 3), dtype=np.float32)
    patches = sample_support(small, SupportConfig(patch=32, count=4), seed=0)
    assert patches.shape == (4, 3, 10, 10)
    flat = np.full((40, 40, 4), 0.3, np.float32)  # RGBA: alpha is not part of the support
    patches = sample_support(flat, SupportConfig(patch=16, count=3), seed=0)
    assert patches.shape == (3, 3, 16, 16)


@pytest.mark.parametrize("field,value,message", [("patch", 2, "patch size must be >= 4"), ("count", 0, "set size"),
                                                  ("candidates", 0, "candidates"), ("min_energy", -1.0, "min_energy")])
def test_bad_support_options_are_config_errors(field: str, value: float, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SupportConfig(**{field: value})
