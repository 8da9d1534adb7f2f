"""The OpenVINO engine: parity with the torch engine on a tiled real photo (fp32 and bf16),
bf16 safety of every CPU engine, per-photo weights from an adaptation, weight-set checks,
and one-line errors when OpenVINO is missing or the CPU has no bf16."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from f2n.errors import EngineUnavailableError, WeightsError
from f2n.export.onnx_export import export_onnx
from f2n.export.openvino_engine import REPLACEMENTS, OpenVinoEngine
from f2n.cpu_features import native_bf16
from f2n.export.torch_engine import TorchEngine
from f2n.nets import RRDBNet
from f2n.runtime.adapt import AdaptConfig, adapt
from f2n.runtime.images import read_image
from f2n.runtime.psnr import psnr
from f2n.runtime.tiling import tiled_upscale
from f2n.runtime.types import PatchBatch

openvino = pytest.importorskip("openvino")
CPU_BF16 = native_bf16()
needs_bf16 = pytest.mark.skipif(not CPU_BF16, reason="this CPU has no native bf16 (AVX512-BF16 or AMX)")
TILE, OVERLAP = 32, 8  # a 40x48 crop -> four overlapping tiles


@pytest.fixture(scope="module")
def real_network(real_sr_weights: Path) -> torch.nn.Module:
    from f2n.weights import load_sr_network

    return load_sr_network(real_sr_weights).model.eval()


@pytest.fixture(scope="module")
def real_onnx(real_sr_onnx: Path) -> Path:
    return real_sr_onnx


@pytest.fixture(scope="module")
def photo_crop(shared_data: Path) -> np.ndarray:
    """40x48 real LQ pixels around Lincoln's face (real_lq/Lincoln.png)."""
    rgb = read_image(shared_data / "real_lq" / "Lincoln.png").rgb
    top, left = rgb.shape[0] // 3, rgb.shape[1] // 3
    return np.ascontiguousarray(rgb[top:top + 40, left:left + 48, :3], dtype=np.float32)


@pytest.fixture(scope="module")
def torch_fp32(real_network: torch.nn.Module, photo_crop: np.ndarray) -> np.ndarray:
    return tiled_upscale(TorchEngine(real_network), photo_crop, tile=TILE, overlap=OVERLAP)


@pytest.mark.slow
def test_fp32_matches_the_torch_engine_on_a_tiled_real_photo(real_network, real_onnx, photo_crop, torch_fp32) -> None:
    engine = OpenVinoEngine(real_onnx, real_network.state_dict(), precision="fp32", threads=1)
    assert psnr(tiled_upscale(engine, photo_crop, tile=TILE, overlap=OVERLAP), torch_fp32) >= 60


@pytest.mark.slow
@needs_bf16
@pytest.mark.parametrize("engine_name", ["openvino", "torch"])
def test_bf16_is_finite_and_within_45_db_of_fp32_on_a_real_photo(engine_name, real_network, real_onnx, photo_crop,
                                                                   torch_fp32, monkeypatch) -> None:
    """Every CPU engine that offers bf16 (ONNX Runtime's CPU EP has no bf16 convolution; the
    AOTInductor bf16 package takes minutes to compile and is covered on the GPU). The fp32
    retry is disabled so a NaN/Inf tile cannot be hidden by it."""
    if engine_name == "openvino":
        engine = OpenVinoEngine(real_onnx, real_network.state_dict(), precision="bf16", threads=1)
    else:
        engine = TorchEngine(real_network, precision="bf16")
    monkeypatch.setattr(engine, "run_fp32", None)  # without a retry, tiled_upscale raises on a NaN/Inf tile
    tiled = tiled_upscale(engine, photo_crop, tile=TILE, overlap=OVERLAP)
    assert 45 <= psnr(tiled, torch_fp32) < 100  # < 100: it really computed in bf16


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[RRDBNet, Path]:
    torch.manual_seed(0)
    net = RRDBNet(num_block=1, num_feat=8, num_grow_ch=4).eval()
    return net, export_onnx(net, tmp_path_factory.mktemp("onnx") / "tiny.onnx")


def adapted_weights(net: RRDBNet) -> dict[str, torch.Tensor]:
    """θ′ from a real adaptation run (5 Adam steps towards a brighter target)."""
    generator = torch.Generator().manual_seed(1)
    lq = torch.rand(4, 3, 12, 12, generator=generator)
    target = torch.clamp(torch.nn.functional.interpolate(lq, scale_factor=4, mode="bicubic") + 0.3, 0, 1)
    patches = PatchBatch(lq, target, torch.ones(4, 1, 48, 48))
    return adapt(net, patches, AdaptConfig(steps=5, lr=0.01, optimizer="adam")).weights


@pytest.mark.parametrize("replacement", REPLACEMENTS)
def test_adapted_weights_give_the_torch_engines_result(tiny, replacement: str) -> None:
    net, onnx_path = tiny
    theta = adapted_weights(net)
    tiles = torch.rand(2, 3, 20, 28, generator=torch.Generator().manual_seed(2))
    reference = TorchEngine(net)
    reference.set_weights(theta)
    want = reference.run(tiles).numpy()

    engine = OpenVinoEngine(onnx_path, net.state_dict(), precision="fp32", replacement=replacement, threads=1)
    before = engine.run(tiles).numpy()
    assert psnr(before, want) < 40  # negative control: θ′ changes the output
    engine.set_weights(theta)
    assert psnr(engine.run(tiles).numpy(), want) >= 60
    engine.set_weights(net.state_dict())  # the next photo's weights replace θ′ entirely
    assert psnr(engine.run(tiles).numpy(), before) >= 60


def test_a_weight_set_that_does_not_fit_is_one_weights_error(tiny) -> None:
    net, onnx_path = tiny
    engine = OpenVinoEngine(onnx_path, net.state_dict(), threads=1)
    wrong = dict(net.state_dict())
    del wrong["conv_last.bias"]
    wrong["conv_first.weight"] = torch.zeros(8, 3, 5, 5)
    with pytest.raises(WeightsError, match=r"missing keys \(1\): conv_last.bias; wrong shapes .* conv_first.weight"):
        engine.set_weights(wrong)


def test_missing_openvino_is_one_line(tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` now raises ImportError
    net, onnx_path = tiny
    with pytest.raises(EngineUnavailableError, match="needs the openvino package .*pip install openvino"):
        OpenVinoEngine(onnx_path, net.state_dict())


def test_bf16_on_a_cpu_without_it_is_one_line(tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CPU's capabilities come from f2n's one probe; here it reports no bf16."""
    monkeypatch.setattr("f2n.cpu_features.native_bf16", lambda: False)
    net, onnx_path = tiny
    with pytest.raises(EngineUnavailableError, match="needs a CPU with AVX512-BF16 or AMX.*use --precision fp32"):
        OpenVinoEngine(onnx_path, net.state_dict(), precision="bf16")
