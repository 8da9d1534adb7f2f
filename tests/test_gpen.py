"""GPEN: a checkpoint in the official key layout (names and shapes written out from the
structure of yangxy/GPEN's FullGenerator, random values) loads strictly and runs."""

import math

import numpy as np
import pytest
import torch

from f2n.errors import WeightsError
from f2n.nets.gpen import GPEN, upfirdn2d
from f2n.weights import load_into


def official_gpen_shapes(size: int, style_dim: int = 512, n_mlp: int = 8, multiplier: int = 2) -> dict[str, tuple]:
    """Key -> shape of GPEN-BFR-<size>.pth, enumerated from the official module tree."""
    ch = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * multiplier, 128: 128 * multiplier, 256: 64 * multiplier,
          512: 32 * multiplier, 1024: 16 * multiplier}
    shapes: dict[str, tuple] = {}
    for i in range(1, n_mlp + 1):
        shapes[f"generator.style.{i}.weight"] = (style_dim, style_dim)
        shapes[f"generator.style.{i}.bias"] = (style_dim,)
    shapes["generator.input.input"] = (1, ch[4], 4, 4)

    def styled(prefix: str, cin: int, cout: int, up: bool) -> None:
        shapes[f"{prefix}.conv.weight"] = (1, cout, cin, 3, 3)
        shapes[f"{prefix}.conv.modulation.weight"] = (cin, style_dim)
        shapes[f"{prefix}.conv.modulation.bias"] = (cin,)
        if up:
            shapes[f"{prefix}.conv.blur.kernel"] = (4, 4)
        shapes[f"{prefix}.noise.weight"] = (1,)
        shapes[f"{prefix}.activate.bias"] = (2 * cout,)

    def to_rgb(prefix: str, cin: int, up: bool) -> None:
        if up:
            shapes[f"{prefix}.upsample.kernel"] = (4, 4)
        shapes[f"{prefix}.conv.weight"] = (1, 3, cin, 1, 1)
        shapes[f"{prefix}.conv.modulation.weight"] = (cin, style_dim)
        shapes[f"{prefix}.conv.modulation.bias"] = (cin,)
        shapes[f"{prefix}.bias"] = (1, 3, 1, 1)

    styled("generator.conv1", ch[4], ch[4], False)
    to_rgb("generator.to_rgb1", 2 * ch[4], False)
    cin = ch[4]
    for n, log_res in enumerate(range(3, int(math.log2(size)) + 1)):
        cout = ch[2**log_res]
        styled(f"generator.convs.{2 * n}", 2 * cin, cout, True)
        styled(f"generator.convs.{2 * n + 1}", 2 * cout, cout, False)
        to_rgb(f"generator.to_rgbs.{n}", 2 * cout, True)
        cin = cout
    shapes["ecd0.0.0.weight"] = (ch[size], 3, 1, 1)
    shapes["ecd0.0.1.bias"] = (ch[size],)
    for i in range(1, int(math.log2(size)) - 1):
        res = size >> i
        shapes[f"ecd{i}.0.0.kernel"] = (4, 4)
        shapes[f"ecd{i}.0.1.weight"] = (ch[res], ch[2 * res], 3, 3)
        shapes[f"ecd{i}.0.2.bias"] = (ch[res],)
    shapes["final_linear.0.weight"] = (style_dim, ch[4] * 16)
    shapes["final_linear.0.bias"] = (style_dim,)
    return shapes


@pytest.mark.parametrize("size", [512, 256])
def test_official_layout_loads_strictly(size: int) -> None:
    expected = official_gpen_shapes(size)
    with torch.device("meta"):
        model = GPEN(size=size)  # shapes only: no random init of 71 M parameters
    assert {key: tuple(value.shape) for key, value in model.state_dict().items()} == expected
    checkpoint = {key: torch.full(shape, index / len(expected)) for index, (key, shape) in enumerate(expected.items())}
    load_into(model, checkpoint, what="official-layout GPEN checkpoint")
    assert torch.equal(model.final_linear[0].weight, checkpoint["final_linear.0.weight"])
    assert torch.equal(model.generator.convs[0].conv.blur.kernel, checkpoint["generator.convs.0.conv.blur.kernel"])
    with pytest.raises(WeightsError, match="missing keys"):
        load_into(model, {k: v for k, v in checkpoint.items() if k != "ecd0.0.1.bias"}, what="a checkpoint")
    parameters = sum(p.numel() for p in model.parameters())
    kernels = sum(1 for key in expected if key.endswith("kernel"))
    assert parameters == sum(math.prod(s) for s in expected.values()) - 16 * kernels
    if size == 512:
        assert parameters == 71_005_223  # GPEN-BFR-512.pth holds 71.0 M parameters (284 MB in fp32)


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
