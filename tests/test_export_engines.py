"""make_engine (what the runtime calls) and the f2n-export CLI, on a tiny RRDBNet."""

from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner
from conftest import TinyRRDBNet

from f2n.errors import ConfigError, EngineUnavailableError
from f2n.export.cli import main
from f2n.export.engines import make_engine
from f2n.export.torch_engine import TorchEngine
from f2n.runtime.tiling import tiled_upscale
from f2n.weights import load_sr_network
from f2n.weights.sr import LoadedSR


@pytest.fixture
def tiny_loaded(tiny_weights: Path) -> LoadedSR:
    return load_sr_network(tiny_weights)


def test_onnx_engine_from_factory_takes_adapted_weights(tiny_loaded: LoadedSR, tiny_rrdbnet: TinyRRDBNet) -> None:
    engine = make_engine("onnx", tiny_loaded, device="cpu", precision="fp32", tile=64)
    adapted = tiny_rrdbnet(1).eval()
    engine.set_weights(adapted.state_dict())
    tiles = torch.rand(2, 3, 16, 12)
    with torch.inference_mode():
        torch.testing.assert_close(engine.run(tiles), adapted(tiles), atol=1e-5, rtol=0)


def test_tiled_onnx_equals_tiled_torch(tiny_loaded: LoadedSR, shared_data: Path) -> None:
    bgr = cv2.imread(str(shared_data / "real_lq" / "Lincoln.png"), cv2.IMREAD_COLOR)[:72, :90]
    rgb = np.ascontiguousarray(bgr[:, :, ::-1], dtype=np.float32) / 255
    engines = [make_engine("onnx", tiny_loaded, device="cpu", precision="fp32", tile=48), TorchEngine(tiny_loaded.model)]
    onnx_out, torch_out = (tiled_upscale(e, rgb, tile=48, overlap=16).astype(np.float64) for e in engines)
    mse = np.mean((onnx_out - torch_out) ** 2)
    assert mse == 0 or 10 * np.log10(1.0 / mse) >= 45


@pytest.mark.parametrize(
    ("name", "device", "precision", "error", "message"),
    [
        ("tensorrt", "cpu", "fp32", ConfigError, "engine must be one of torch, onnx, aoti, trt, openvino, ncnn, got 'tensorrt'"),
        ("openvino", "cuda", "fp16", EngineUnavailableError, "runs on the CPU; on CUDA use --engine trt"),
        ("openvino", "cpu", "fp16", ConfigError, "precision must be one of fp32, bf16, got 'fp16'"),
        ("onnx", "tpu", "fp32", ConfigError, "device must be cpu or cuda, got 'tpu'"),
        ("onnx", "cpu", "bf16", ConfigError, "on the CPU runs fp32 only, got bf16"),
        ("trt", "cpu", "fp16", EngineUnavailableError, "runs on CUDA GPUs only; on the CPU use --engine onnx"),
    ],
)
def test_make_engine_refuses_with_one_line(tiny_loaded: LoadedSR, name: str, device: str, precision: str, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        make_engine(name, tiny_loaded, device=device, precision=precision, tile=64)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the messages where CUDA is missing")
def test_gpu_engines_without_cuda_say_what_to_use(tiny_loaded: LoadedSR) -> None:
    with pytest.raises(EngineUnavailableError, match="onnx engine instead"):
        make_engine("trt", tiny_loaded, device="cuda", precision="fp16", tile=64)
    with pytest.raises(EngineUnavailableError, match="needs CUDA, which is not available here; use --device cpu"):
        make_engine("aoti", tiny_loaded, device="cuda", precision="fp16", tile=64)


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="checks the message without onnxruntime-gpu")
def test_onnx_on_cuda_without_the_cuda_ep_says_what_to_use(tiny_loaded: LoadedSR) -> None:
    with pytest.raises(EngineUnavailableError, match="needs onnxruntime-gpu .*; use --device cpu or --engine torch"):
        make_engine("onnx", tiny_loaded, device="cuda", precision="fp16", tile=64)


def test_cli_exports_onnx_and_prints_the_verification(tiny_weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "tiny.onnx"
    result = CliRunner().invoke(main, ["--weights", str(tiny_weights), "--format", "onnx", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "verification: max abs difference ONNX Runtime vs PyTorch fp32" in result.output
    diff = float(result.output.split("real crop = ")[1].split()[0])
    assert diff <= 1e-4 and out.is_file()


@pytest.mark.parametrize(
    ("args", "exit_code", "message"),
    [
        (["--format", "trt"], 4, "TensorRT cannot be imported here"),
        (["--precision", "bf16"], 5, "ONNX export precision must be one of ['fp16', 'fp32'], got 'bf16'"),
        (["--weights", "no-such-weights.pth"], 3, "neither a registry name"),
        (["--out", "x.pt2"], 5, "must end in .onnx for --format onnx, got '.pt2'"),
        (["--format", "aoti"], 5, "must end in .pt2 for --format aoti, got '.onnx'"),
    ],
)
def test_cli_errors_are_one_line_and_leave_no_file(tiny_weights: Path, tmp_path: Path, args: list[str], exit_code: int, message: str) -> None:
    if importlib_has_tensorrt() and "trt" in args:
        pytest.skip("TensorRT is installed here")
    args = ["--weights", str(tiny_weights), "--out", str(tmp_path / "x.onnx"), *args]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == exit_code
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert not (tmp_path / "x.onnx").exists()


def test_cli_export_that_fails_verification_leaves_the_old_file(tiny_weights: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "x.onnx"
    out.write_bytes(b"the user's previous export")
    monkeypatch.setattr("f2n.export.cli.verify_onnx", lambda *args: 1.0)  # far above the fp32 tolerance
    result = CliRunner().invoke(main, ["--weights", str(tiny_weights), "--out", str(out)])
    assert result.exit_code == 6 and "differs from PyTorch by 1" in result.output
    assert out.read_bytes() == b"the user's previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.onnx"]  # no temp left


def importlib_has_tensorrt() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available()
