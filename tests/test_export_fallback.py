"""The fp32 retry of low-precision export engines: a tile that really overflows fp16
in an fp16 ONNX graph (CPU EP, weights as inputs) is redone in fp32 by the tiler.

ORT's CPU EP runs an fp16 graph in fp32 between a Cast of the inputs and a Cast of the
output (it has no fp16 Conv kernel here), so what overflows is the output: a patch of
the photo at 6e4 (still an fp16 value) through a net whose output gain is x20 gives
~9e4 > 65504 = Inf in that tile only."""

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_RRDBNET

from f2n.export.onnx_export import export_onnx
from f2n.export.ort_engine import OrtEngine
from f2n.export.torch_engine import TorchEngine
from f2n.nets.rrdbnet import RRDBNet
from f2n.runtime.tiling import tiled_upscale

TILE, OVERLAP = 32, 8  # a 40 x 56 photo: tiles at rows 0 and 8, columns 0 and 24


def loud_state(seed: int) -> dict[str, torch.Tensor]:
    """A tiny net with output gain x20 and centred on 0.5, so normal pixels stay
    partly inside [0, 1] (the tiler clips) while the bright patch overflows fp16."""
    torch.manual_seed(seed)
    state = RRDBNet(**TINY_RRDBNET).state_dict()
    state["conv_last.weight"] = state["conv_last.weight"] * 20
    state["conv_last.bias"] = state["conv_last.bias"] * 20 + 0.5
    return state


def photo_with_bright_patch() -> np.ndarray:
    image = np.random.default_rng(0).random((40, 56, 3), dtype=np.float32)
    image[:8, :24] = 6e4  # inside the first tile only
    return image


def torch_net(state: dict[str, torch.Tensor]) -> RRDBNet:
    net = RRDBNet(**TINY_RRDBNET).eval()
    net.load_state_dict(state)
    return net


@pytest.fixture(scope="module")
def fp16_graph(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return export_onnx(RRDBNet(**TINY_RRDBNET), tmp_path_factory.mktemp("fp16") / "tiny16.onnx", precision="fp16")


def test_overflowing_fp16_tiles_are_redone_in_fp32(fp16_graph: Path) -> None:
    state = loud_state(1)
    engine = OrtEngine(fp16_graph, state)
    image = photo_with_bright_patch()
    source = torch.from_numpy(image).permute(2, 0, 1)
    first, other = source[None, :, :TILE, :TILE], source[None, :, 8:, 24:]
    assert not torch.isfinite(engine.run(first)).all() and torch.isfinite(engine.run(other)).all()  # a real fp16 overflow, one tile
    got = tiled_upscale(engine, image, tile=TILE, overlap=OVERLAP)
    want = tiled_upscale(TorchEngine(torch_net(state)), image, tile=TILE, overlap=OVERLAP)
    assert np.isfinite(got).all()
    inside = (want > 0) & (want < 1)
    assert inside[:32].mean() > 0.03  # the comparison is not only of clipped pixels
    np.testing.assert_allclose(got, want, atol=5e-3, rtol=0)  # fp16-rounded weights and output


def test_the_fp32_twin_follows_later_weights(fp16_graph: Path) -> None:
    engine = OrtEngine(fp16_graph, loud_state(1))
    tiles = torch.from_numpy(photo_with_bright_patch()).permute(2, 0, 1)[None, :, :TILE, :TILE]
    engine.run_fp32(tiles)  # builds the twin with the first weights
    later = loud_state(2)
    engine.set_weights(later)
    with torch.inference_mode():
        want = torch_net(later)(tiles)
    got = engine.run_fp32(tiles)
    assert want.abs().max() > 65504 and torch.isfinite(got).all()
    torch.testing.assert_close(got, want, atol=5e-3, rtol=2e-3)


def test_an_fp32_engine_retries_with_itself(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = RRDBNet(**TINY_RRDBNET).eval()
    engine = OrtEngine(export_onnx(net, tmp_path / "tiny.onnx"), net.state_dict())
    tiles = torch.rand(1, 3, 12, 12)
    torch.testing.assert_close(engine.run_fp32(tiles), engine.run(tiles), atol=0, rtol=0)
