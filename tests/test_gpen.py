"""GPEN: checkpoints written by the official code (yangxy/GPEN, random weights, see
tests/data/gpen_official/README.md) load strictly and give the official outputs;
hyperparameters are read back from the shapes; the upfirdn2d op against numpy."""

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from f2n.errors import WeightsError
from f2n.nets.gpen import GPEN, upfirdn2d
from f2n.weights import load_state_dict_file
from f2n.weights.gpen import GPEN_BFR, gpen_hyperparameters, is_gpen, load_gpen
from f2n.weights.networks import identify

FIXTURES = Path(__file__).parent / "data" / "gpen_official"  # made by the official code: see its README


@pytest.mark.parametrize("name, multiplier", [("gpen_cm2", 2), ("gpen_cm1", 1)])
def test_a_checkpoint_of_the_official_code_loads_and_restores_as_the_official_code(name: str, multiplier: int) -> None:
    state = load_state_dict_file(FIXTURES / f"{name}.pth")
    assert is_gpen(state) and identify(state) == "gpen"
    hyper = gpen_hyperparameters(state, FIXTURES / f"{name}.pth")
    assert hyper == {"size": 64, "style_dim": 16, "n_mlp": 2, "channel_multiplier": multiplier, "narrow": 1 / 64}
    model = load_gpen(state, FIXTURES / f"{name}.pth")
    io = load_file(FIXTURES / f"{name}_io.safetensors")
    with torch.no_grad():
        restored = model(io["input"])
    torch.testing.assert_close(restored, io["output"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("size", [512, 256])
def test_released_gpen_bfr_hyperparameters_are_read_back_from_the_shapes(size: int) -> None:
    with torch.device("meta"):
        model = GPEN(**GPEN_BFR[size])
    hyper = gpen_hyperparameters(model.state_dict(), Path(f"GPEN-BFR-{size}.pth"))
    assert hyper == {**GPEN_BFR[size], "style_dim": 512, "n_mlp": 8}
    if size == 512:
        assert sum(p.numel() for p in model.parameters()) == 71_005_223  # GPEN-BFR-512.pth: 71.0 M (284 MB fp32)


def test_a_gpen_missing_a_weight_is_refused_in_one_line() -> None:
    state = load_state_dict_file(FIXTURES / "gpen_cm1.pth")
    del state["ecd0.0.1.bias"]
    with pytest.raises(WeightsError, match="missing keys"):
        load_gpen(state, Path("gpen.pth"))


def test_narrow_gpen_restores_a_512_face_and_depends_on_it() -> None:
    torch.manual_seed(0)
    model = GPEN(size=512, narrow=0.0625).eval()
    faces = torch.rand(2, 3, 512, 512) * 2 - 1
    with torch.no_grad():
        out = model(faces)
    assert out.shape == (2, 3, 512, 512) and torch.isfinite(out).all()
    assert (out[0] - out[1]).abs().mean() > 1e-3  # the encoder features reach the output
    with pytest.raises(ValueError, match="512x512"):
        model(faces[:, :, :256, :256])


def test_upfirdn2d_keeps_a_constant_image_constant() -> None:
    kernel = torch.tensor([1.0, 3, 3, 1])
    kernel = kernel[:, None] * kernel[None, :]
    constant = torch.full((1, 2, 8, 8), 0.7)
    up = upfirdn2d(constant, kernel / kernel.sum() * 4, up=2, pad=(2, 1))
    assert up.shape == (1, 2, 16, 16)
    torch.testing.assert_close(up[..., 2:-2, 2:-2], torch.full_like(up[..., 2:-2, 2:-2], 0.7))
    down = upfirdn2d(constant, kernel / kernel.sum(), down=2, pad=(1, 1))
    assert down.shape == (1, 2, 4, 4)
    torch.testing.assert_close(down[..., 1:-1, 1:-1], torch.full_like(down[..., 1:-1, 1:-1], 0.7))


def _reference_upfirdn_1d(x: np.ndarray, taps: np.ndarray, up: int, down: int, pad: tuple[int, int]) -> np.ndarray:
    zeros_between = np.zeros(len(x) * up)
    zeros_between[::up] = x
    return np.convolve(np.pad(zeros_between, pad), taps, mode="valid")[::down]


@pytest.mark.parametrize("up, down, pad", [(2, 1, (2, 1)), (1, 2, (2, 2)), (1, 1, (1, 1)), (1, 2, (1, 1))])
def test_upfirdn2d_matches_a_separable_numpy_reference(up: int, down: int, pad: tuple[int, int]) -> None:
    taps = np.array([1.0, 2.0, 3.0, 5.0])  # not symmetric: a missing kernel flip would show
    image = np.random.default_rng(0).random((7, 9))
    rows = np.stack([_reference_upfirdn_1d(row, taps, up, down, pad) for row in image])
    expected = np.stack([_reference_upfirdn_1d(column, taps, up, down, pad) for column in rows.T]).T
    kernel = torch.from_numpy(np.outer(taps, taps)).float()
    out = upfirdn2d(torch.from_numpy(image).float()[None, None], kernel, up=up, down=down, pad=pad)
    np.testing.assert_allclose(out[0, 0].numpy(), expected, rtol=1e-5, atol=1e-5)
