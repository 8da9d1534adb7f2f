"""ONNX export (names, parity, dynamic shapes) and the ONNX Runtime engine's per-photo
weight replacement, on a tiny RRDBNet; one real-weights parity test on a small crop."""

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch

from conftest import TinyRRDBNet

from f2n.errors import ConfigError, WeightsError
from f2n.export.names import map_initializers
from f2n.export.onnx_export import (
    FP32_TOLERANCE,
    check_weights_kept,
    export_onnx,
    initializer_arrays,
    verify_onnx,
)
from f2n.export.ort_engine import REPLACEMENTS, OrtEngine
from f2n.nets.rrdbnet import RRDBNet


def real_crop(shared_data: Path, size: int) -> torch.Tensor:
    """A (1, 3, size, size) float32 RGB crop of a real low-quality photo."""
    bgr = cv2.imread(str(shared_data / "real_lq" / "Lincoln.png"), cv2.IMREAD_COLOR)
    y, x = bgr.shape[0] // 3, bgr.shape[1] // 3
    rgb = cv2.cvtColor(bgr[y : y + size, x : x + size], cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].contiguous()


@pytest.fixture(scope="module")
def tiny_onnx(tiny_rrdbnet: TinyRRDBNet, tmp_path_factory: pytest.TempPathFactory) -> tuple[RRDBNet, Path]:
    net = tiny_rrdbnet(0).eval()
    return net, export_onnx(net, tmp_path_factory.mktemp("onnx") / "tiny.onnx")


def test_initializer_names_are_the_canonical_keys_with_exact_values(tiny_onnx: tuple[RRDBNet, Path]) -> None:
    net, path = tiny_onnx
    graph = onnx.load(str(path))
    names = map_initializers(graph, net.state_dict().keys())
    assert set(names.canonical_to_onnx) == set(net.state_dict())  # every parameter replaceable
    assert all(key == name for key, name in names.canonical_to_onnx.items())  # TorchScript exporter keeps names
    arrays = initializer_arrays(graph)
    for key, value in net.state_dict().items():
        np.testing.assert_array_equal(arrays[key], value.numpy())  # onnxslim folded nothing into them


def test_name_map_accepts_torch_export_spelling_and_reports_missing(tiny_onnx: tuple[RRDBNet, Path]) -> None:
    net, path = tiny_onnx
    graph = onnx.load(str(path))
    for init in graph.graph.initializer:
        init.name = "p_" + init.name.replace(".", "_")
    names = map_initializers(graph, net.state_dict().keys())
    assert names.canonical_to_onnx["body.0.rdb1.conv1.weight"] == "p_body_0_rdb1_conv1_weight"
    assert names.onnx_to_canonical["p_conv_last_bias"] == "conv_last.bias"
    del graph.graph.initializer[0]
    with pytest.raises(WeightsError, match="1 network weights have no ONNX initializer"):
        map_initializers(graph, net.state_dict().keys())


def test_folded_weight_is_detected(tiny_onnx: tuple[RRDBNet, Path]) -> None:
    net, path = tiny_onnx
    changed = {key: value.clone() for key, value in net.state_dict().items()}
    changed["body.0.rdb1.conv5.weight"] *= 0.2  # what a Conv-Mul fusion would store
    with pytest.raises(WeightsError, match="body.0.rdb1.conv5.weight"):
        check_weights_kept(onnx.load(str(path)), changed)


def test_graph_has_dynamic_batch_height_width(tiny_onnx: tuple[RRDBNet, Path]) -> None:
    _, path = tiny_onnx
    graph = onnx.load(str(path))
    dims = [d.dim_param or d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1] == 3 and all(isinstance(d, str) for d in (dims[0], dims[2], dims[3]))
    assert graph.opset_import[0].version >= 17


def test_onnx_runtime_matches_pytorch_on_a_real_crop(tiny_onnx: tuple[RRDBNet, Path], shared_data: Path) -> None:
    net, path = tiny_onnx
    assert verify_onnx(path, net, real_crop(shared_data, 40)) <= FP32_TOLERANCE


def test_fp16_export_stores_fp16_weights_and_stays_close(tiny_rrdbnet: TinyRRDBNet, tmp_path: Path, shared_data: Path) -> None:
    net = tiny_rrdbnet(0).eval()
    path = export_onnx(net, tmp_path / "tiny16.onnx", precision="fp16")
    assert onnx.load(str(path)).graph.initializer[0].data_type == onnx.TensorProto.FLOAT16
    assert verify_onnx(path, net, real_crop(shared_data, 24)) < 5e-3
    with pytest.raises(ConfigError, match="'reinit' on the CPU needs an fp32 ONNX graph, got float16"):
        OrtEngine(path, net.state_dict(), device="cpu", replacement="reinit")  # the CPU EP's Casts would swallow replaced weights


def test_bf16_onnx_export_is_refused(tiny_rrdbnet: TinyRRDBNet, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="got 'bf16'"):
        export_onnx(tiny_rrdbnet(0).eval(), tmp_path / "x.onnx", precision="bf16")
    assert not list(tmp_path.iterdir())  # nothing half-written


@pytest.mark.parametrize("replacement", REPLACEMENTS)
def test_ort_engine_takes_per_photo_weights(tiny_rrdbnet: TinyRRDBNet, tiny_onnx: tuple[RRDBNet, Path], replacement: str) -> None:
    base, path = tiny_onnx
    adapted = tiny_rrdbnet(1).eval()  # every weight differs from the exported ones
    tiles = torch.rand(2, 3, 20, 28)
    engine = OrtEngine(path, base.state_dict(), replacement=replacement)
    with torch.inference_mode():
        want_base, want_adapted = base(tiles), adapted(tiles)
    torch.testing.assert_close(engine.run(tiles), want_base, atol=1e-5, rtol=0)
    engine.set_weights(adapted.state_dict())
    torch.testing.assert_close(engine.run(tiles), want_adapted, atol=1e-5, rtol=0)
    # One weight at a time: an override silently dropped for any of them shows here.
    for key in ("body.0.rdb2.conv5.weight", "conv_last.bias"):
        changed = dict(adapted.state_dict()) | {key: adapted.state_dict()[key] + 0.5}
        engine.set_weights(changed)
        assert (engine.run(tiles) - want_adapted).abs().max() > 1e-3, key


def test_ort_engine_does_not_alias_the_callers_tensors(tiny_onnx: tuple[RRDBNet, Path]) -> None:
    base, path = tiny_onnx
    weights = {key: value.clone() for key, value in base.state_dict().items()}
    engine = OrtEngine(path, weights)
    tiles = torch.rand(1, 3, 12, 12)
    before = engine.run(tiles)
    weights["conv_last.bias"] += 1.0  # e.g. the adaptation continuing in place
    torch.testing.assert_close(engine.run(tiles), before, atol=0, rtol=0)


def test_ort_engine_rejects_weights_that_do_not_fit(tiny_onnx: tuple[RRDBNet, Path]) -> None:
    base, path = tiny_onnx
    engine = OrtEngine(path, base.state_dict())
    weights = dict(base.state_dict())
    weights["conv_first.weight"] = torch.zeros(8, 3, 5, 5)
    with pytest.raises(WeightsError, match=r"^weights do not fit the ONNX graph: wrong shapes \(given vs expected\) \(1\): conv_first.weight \(8, 3, 5, 5\) vs \(8, 3, 3, 3\)$"):
        engine.set_weights(weights)
    del weights["conv_first.weight"]
    with pytest.raises(WeightsError, match=r"^weights do not fit the ONNX graph: missing keys \(1\): conv_first.weight$"):
        engine.set_weights(weights)


@pytest.mark.slow
def test_real_weights_onnx_matches_pytorch(real_sr_weights: Path, real_sr_onnx: Path, shared_data: Path) -> None:
    """Full 23-block Real-ESRGAN x4plus (exported once per session, ~10 s) on a 24x24 crop."""
    from f2n.weights import load_sr_network

    loaded = load_sr_network(real_sr_weights)
    path = real_sr_onnx
    assert len(map_initializers(onnx.load(str(path)), loaded.model.state_dict().keys()).canonical_to_onnx) == 702  # 23 x 3 x 5 convs + 6, weight and bias
    assert verify_onnx(path, loaded.model, real_crop(shared_data, 24)) <= FP32_TOLERANCE
