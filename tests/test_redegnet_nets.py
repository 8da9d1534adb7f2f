"""ReDegNet's DegNet and SynNet: checkpoints made by the official code on random weights
(tests/data/redegnet_official/README.md) load strictly through the dispatcher and give the
official outputs from the official pre-processing; hyperparameters are read back from shapes."""

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from f2n.errors import WeightsError
from f2n.nets.redegnet_blocks import official_channels
from f2n.nets.redegnet_degnet import DegNet
from f2n.nets.redegnet_syn_encoder import SynNetEncoder
from f2n.nets.redegnet_syn_generator import SynNetGenerator
from f2n.runtime.images import read_image
from f2n.runtime.redegnet import to_network_range
from f2n.weights import load_network, load_state_dict_file
from f2n.weights.redegnet import (
    degnet_hyperparameters,
    syn_encoder_hyperparameters,
    syn_generator_hyperparameters,
)

FIXTURES = Path(__file__).parent / "data" / "redegnet_official"  # made by the official code: see its README
SMALL_CHANNELS = {4: 24, 8: 20, 16: 12, 32: 8}


def _load(file: str, expected: str) -> torch.nn.Module:
    name, model = load_network(load_state_dict_file(FIXTURES / file), FIXTURES / file, expected=expected)
    assert name == expected
    return model


def _official_input(name: str, x: int, y: int, size: int = 32) -> torch.Tensor:
    """f2n's decoding and range conversion of the official crop."""
    rgb = read_image(FIXTURES / f"{name}.png").rgb
    return to_network_range(rgb[y:y + size, x:x + size])[None]


def test_the_official_preprocessing_is_rgb_in_minus_one_to_one_on_the_crop() -> None:
    io = load_file(FIXTURES / "redegnet_io.safetensors")
    for name, (x, y) in {"restored": (5, 9), "degraded": (5, 9), "natural": (11, 3)}.items():
        torch.testing.assert_close(_official_input(name, x, y), io[name], rtol=0, atol=1e-6)


def test_official_checkpoints_load_strictly_and_synthesise_as_the_official_code() -> None:
    io = load_file(FIXTURES / "redegnet_io.safetensors")
    degnet = _load("net_deg_small.pth", "redegnet-degnet")
    encoder = _load("net_synE_small.pth", "redegnet-syn-encoder")
    generator = _load("net_synG_small.pth", "redegnet-syn-generator")
    restored, degraded, natural = (_official_input(n, *xy) for n, xy in
                                   (("restored", (5, 9)), ("degraded", (5, 9)), ("natural", (11, 3))))
    with torch.no_grad():
        degradation = degnet(restored, degraded)
        natural_features = encoder(natural)
        syn_face = generator(degradation, encoder(restored))
        syn_natural = generator(degradation, natural_features)
    torch.testing.assert_close(degradation, io["degradation"], rtol=0, atol=1e-5)
    for index, feature in enumerate(natural_features):
        torch.testing.assert_close(feature, io[f"natural_features.{index}"], rtol=0, atol=1e-5)
    torch.testing.assert_close(syn_face, io["syn_face"], rtol=0, atol=1e-5)
    torch.testing.assert_close(syn_natural, io["syn_natural"], rtol=0, atol=1e-5)
    assert not torch.allclose(syn_face, syn_natural, atol=1e-3)  # the content features matter


def test_the_training_codes_discriminator_loads_strictly_and_scores_as_the_official_code() -> None:
    model = _load("net_synD_small.pth", "redegnet-discriminator")
    assert (model.netD.models[0].conv1.out_channels, len(model.netD.models)) == (4, 3)  # dim 4, size 32
    io = load_file(FIXTURES / "net_synD_small_io.safetensors")
    with torch.no_grad():
        score = model(io["degraded"], io["clean"], io["degradation"])
    torch.testing.assert_close(score, io["score"], rtol=0, atol=1e-5)


def test_hyperparameters_are_read_back_from_the_official_shapes() -> None:
    deg = load_state_dict_file(FIXTURES / "net_deg_small.pth")
    enc = load_state_dict_file(FIXTURES / "net_synE_small.pth")
    gen = load_state_dict_file(FIXTURES / "net_synG_small.pth")
    assert degnet_hyperparameters(deg, "d") == {"size": 32, "style_dim": 16, "channels": SMALL_CHANNELS}
    assert syn_encoder_hyperparameters(enc, "e") == {"size": 32, "channels": SMALL_CHANNELS}
    assert syn_generator_hyperparameters(gen, "g") == {"size": 32, "style_dim": 16, "n_mlp": 2,
                                                       "channels": SMALL_CHANNELS}


@pytest.mark.parametrize("network, reader", [
    (lambda: DegNet(), degnet_hyperparameters),
    (lambda: SynNetEncoder(), syn_encoder_hyperparameters),
    (lambda: SynNetGenerator(), syn_generator_hyperparameters),
])
def test_the_released_configuration_is_read_back_from_its_shapes(network, reader) -> None:
    with torch.device("meta"):
        state = network().state_dict()
    hyper = reader(state, "released.pth")
    assert hyper["size"] == 256 and hyper["channels"] == {r: c for r, c in official_channels().items() if r <= 256}
    assert hyper.get("style_dim", 512) == 512 and hyper.get("n_mlp", 8) == 8


def test_a_truncated_checkpoint_is_a_weights_error_naming_the_file() -> None:
    state = load_state_dict_file(FIXTURES / "net_synG_small.pth")
    del state["convs.3.conv2.0.bias"]
    with pytest.raises(WeightsError, match="truncated.pth"):
        load_network(state, Path("truncated.pth"), expected="redegnet-syn-generator")


def test_to_network_range_maps_zero_and_one_to_minus_one_and_one() -> None:
    rgb = np.zeros((2, 2, 3), np.float32)
    rgb[0, 0] = 1.0
    tensor = to_network_range(rgb)
    assert tensor.shape == (3, 2, 2) and tensor[:, 0, 0].tolist() == [1.0] * 3 and tensor[:, 1, 1].tolist() == [-1.0] * 3
