"""The dispatcher: each network's state dict is recognised as that network and loads back
with the same hyperparameters and the same output (spandrel's round-trip pattern)."""

from pathlib import Path

import pytest
import torch
from torch import nn

from f2n.errors import WeightsError
from f2n.nets import MaskNet, RRDBNet
from f2n.nets.discriminator import UNetDiscriminatorSN
from f2n.nets.gpen import GPEN
from f2n.nets.gpen_discriminator import GPENDiscriminator
from f2n.nets.mmrb import MMRBRestorer
from f2n.weights.networks import NETWORKS, identify, load_network


@pytest.mark.parametrize("name, build, example", [
    ("rrdbnet", lambda: RRDBNet(num_feat=8, num_block=2, num_grow_ch=4), lambda: (torch.rand(1, 3, 8, 8),)),
    ("rrdbnet", lambda: RRDBNet(num_in_ch=1, num_out_ch=1, num_feat=12, num_block=1, num_grow_ch=6),
     lambda: (torch.rand(1, 1, 8, 8),)),
    ("masknet", lambda: MaskNet(num_feat=8, num_layers=3), lambda: (torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))),
    ("masknet", lambda: MaskNet(num_feat=4, num_layers=5), lambda: (torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))),
    ("unet-discriminator", lambda: UNetDiscriminatorSN(num_feat=8), lambda: (torch.rand(1, 3, 32, 32),)),
    ("gpen-discriminator", lambda: GPENDiscriminator(64, channel_multiplier=1, narrow=0.0625),
     lambda: (torch.rand(2, 3, 64, 64),)),
    ("gpen-discriminator", lambda: GPENDiscriminator(32, channel_multiplier=2, narrow=0.03125),
     lambda: (torch.rand(2, 3, 32, 32),)),
    # An MMRB restorer carries GPEN's keys too: it must be told apart, with its decoder depth.
    ("mmrb", lambda: MMRBRestorer(64, style_dim=32, n_mlp=2, channel_multiplier=1, narrow=0.0625, decoder_blocks=2),
     lambda: (torch.rand(1, 3, 64, 64),)),
    ("mmrb", lambda: MMRBRestorer(64, style_dim=16, n_mlp=1, channel_multiplier=2, narrow=0.03125, decoder_blocks=0),
     lambda: (torch.rand(1, 3, 64, 64),)),
    ("gpen", lambda: GPEN(64, style_dim=32, n_mlp=2, channel_multiplier=1, narrow=0.0625),
     lambda: (torch.rand(1, 3, 64, 64),)),
])
def test_a_state_dict_is_recognised_and_loads_back_with_the_same_output(
        name: str, build: object, example: object) -> None:
    torch.manual_seed(0)
    net: nn.Module = build().eval()
    state = {key: value.clone() for key, value in net.state_dict().items()}
    assert identify(state) == name
    kind, loaded = load_network(state, Path("weights.safetensors"))
    assert kind == name
    inputs = example()
    with torch.no_grad():
        torch.testing.assert_close(loaded(*inputs), net(*inputs), rtol=0, atol=0)


def test_an_expected_network_refuses_any_other_in_one_line() -> None:
    state = MaskNet(num_feat=4, num_layers=2).state_dict()
    with pytest.raises(WeightsError, match="holds a masknet network, expected gpen$"):
        load_network(state, Path("x.pth"), expected="gpen")
    with pytest.raises(WeightsError, match="holds no known network .keys start head.weight"):
        load_network({"head.weight": torch.zeros(2)}, Path("x.pth"))


def test_network_names_are_unique() -> None:
    names = [network.name for network in NETWORKS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("name, build", [
    ("vgg19", lambda: __import__("torchvision").models.vgg19()),
    ("arcface-ir-se50", lambda: __import__("facexlib.recognition.arcface_arch", fromlist=["Backbone"]).Backbone(
        num_layers=50, drop_ratio=0.6, mode="ir_se")),
])
def test_loss_networks_are_recognised_and_load_strictly(name: str, build: object) -> None:
    with torch.device("meta"):  # shapes only: random values below are faster than the networks' init
        shapes = build().state_dict()
    state = {key: torch.rand(value.shape).to(value.dtype) for key, value in shapes.items()}
    assert identify(state) == name
    _, loaded = load_network(state, Path("weights.pth"), expected=name)
    assert all(torch.equal(loaded.state_dict()[key], value) for key, value in state.items())
