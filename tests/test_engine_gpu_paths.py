"""What each engine does when its GPU runtime misbehaves, tested where a CPU allows:
ONNX Runtime missing or silently on the CPU, out-of-memory from ONNX Runtime and
AOTInductor turned into the one type the tiler halves the tile on, AOTInductor on CUDA
without the toolkit, IEEE fp32 for verification. (TensorRT's own: test_export_trt.py.)"""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument, RuntimeException

from f2n.errors import EngineUnavailableError
from f2n.export.aoti import aoti_out_of_memory, missing_cuda_toolkit
from f2n.export.fp32_mode import ieee_fp32
from f2n.export.onnx_export import export_onnx
from f2n.export.ort_engine import OrtEngine
from f2n.nets.rrdbnet import RRDBNet
from f2n.onnxruntime_support import check_providers, import_onnxruntime, ort_out_of_memory
from f2n.runtime.tiling import tile_boxes, tiled_upscale

# ONNX Runtime's own texts (its BFC arena on the CPU/GPU, its CUDA provider)
ORT_ARENA_OOM = (
    "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while running Conv node. Name:'/conv_first/Conv' "
    "Status Message: /onnxruntime_src/onnxruntime/core/framework/bfc_arena.cc:376 void* onnxruntime::BFCArena::AllocateRawInternal"
    "(size_t, bool, onnxruntime::Stream*, bool, onnxruntime::WaitNotificationFn) Failed to allocate memory for requested buffer of size 4294967296"
)
ORT_CUDA_OOM = "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : CUDA failure 2: out of memory ; GPU=0 ; hostname=x ; file=cuda_allocator.cc ; line=47"
# AOTInductor's runner: the cause goes to stderr, Python sees only this
AOTI_RUN_FAILED = "run_func_( container_handle_, input_handles.data(), input_handles.size(), output_handles.data(), output_handles.size(), " \
    "reinterpret_cast<AOTInductorStreamHandle>(stream_handle), proxy_executor_handle_) API call failed at /pytorch/torch/csrc/inductor/aoti_runner/model_container_runner.cpp, line 144"


def tiny_ort_engine(tmp_path: Path) -> OrtEngine:
    torch.manual_seed(0)
    model = RRDBNet(num_block=1, num_feat=8, num_grow_ch=4).eval()
    return OrtEngine(export_onnx(model, tmp_path / "tiny.onnx"), model.state_dict())


def test_onnx_runtime_out_of_memory_halves_the_tile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ONNX Runtime fails the first tile with its arena's allocation error (raised by
    its session, the dependency); the engine reports it as torch.OutOfMemoryError and
    the tiler restarts the photo with half the tile: the result is the half-tile one."""
    engine = tiny_ort_engine(tmp_path)
    image = np.random.default_rng(0).random((40, 40, 3), dtype=np.float32)
    want = tiled_upscale(engine, image, tile=16, overlap=8)
    session = engine._loaded.session
    real_run, calls = session.run_with_iobinding, []

    def run_with_iobinding(binding, *args):
        calls.append(binding)
        if len(calls) == 1:
            raise RuntimeException(ORT_ARENA_OOM)
        return real_run(binding, *args)

    monkeypatch.setattr(session, "run_with_iobinding", run_with_iobinding)
    np.testing.assert_array_equal(tiled_upscale(engine, image, tile=32, overlap=8), want)
    assert len(calls) == 1 + len(tile_boxes(40, 40, 16, 8))  # the failed 32-px tile, then every 16-px tile


def test_other_onnx_runtime_errors_are_not_taken_for_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = tiny_ort_engine(tmp_path)

    def run_with_iobinding(binding, *args):
        raise InvalidArgument("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions for input: input")

    monkeypatch.setattr(engine._loaded.session, "run_with_iobinding", run_with_iobinding)
    with pytest.raises(InvalidArgument):
        tiled_upscale(engine, np.zeros((20, 20, 3), np.float32), tile=16, overlap=4)


def test_onnx_runtime_memory_errors_are_recognised_by_type_and_text() -> None:
    assert ort_out_of_memory(RuntimeException(ORT_ARENA_OOM)) and ort_out_of_memory(RuntimeException(ORT_CUDA_OOM))
    assert not ort_out_of_memory(RuntimeError("Failed to allocate memory"))  # not ONNX Runtime's: not its to map
    assert not ort_out_of_memory(InvalidArgument("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Unexpected input data type"))


def test_a_cuda_session_that_fell_back_to_the_cpu_is_refused_in_one_line() -> None:
    with pytest.raises(EngineUnavailableError, match="asked for CUDA but gave CPUExecutionProvider") as error:
        check_providers(["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"])
    assert "\n" not in str(error.value)
    check_providers(["CUDAExecutionProvider", "CPUExecutionProvider"], ["CUDAExecutionProvider", "CPUExecutionProvider"])
    check_providers(["CPUExecutionProvider"], ["CPUExecutionProvider"])


def test_missing_onnx_runtime_names_the_two_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if neither build were installed
    with pytest.raises(EngineUnavailableError, match=r"pip install 'f2n\[cpu\]' .* 'f2n\[gpu\]' .* never both"):
        import_onnxruntime()


def test_aoti_out_of_memory_is_told_by_the_allocator_count() -> None:
    assert aoti_out_of_memory(RuntimeError(AOTI_RUN_FAILED), ooms_before=2, ooms_after=3)
    assert not aoti_out_of_memory(RuntimeError(AOTI_RUN_FAILED), ooms_before=2, ooms_after=2)
    assert aoti_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), 0, 0)


def test_aoti_on_cuda_without_the_toolkit_says_what_is_missing(tmp_path: Path) -> None:
    assert "no $CUDA_HOME, no nvcc on PATH" in missing_cuda_toolkit(None)
    pip_only = tmp_path / "cuda"  # nvcc found, no headers: what a pip-only install looks like
    (pip_only / "bin").mkdir(parents=True)
    assert f"CUDA_HOME={pip_only} has no include/cuda_runtime_api.h" in missing_cuda_toolkit(str(pip_only))
    (pip_only / "include").mkdir()
    (pip_only / "include" / "cuda_runtime_api.h").write_text("")
    assert missing_cuda_toolkit(str(pip_only)) is None


def test_ieee_fp32_restores_the_previous_settings_even_after_an_error() -> None:
    before = torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision
    with pytest.raises(ValueError), ieee_fp32():
        assert torch.backends.cudnn.conv.fp32_precision == "ieee"
        raise ValueError
    assert (torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision) == before


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="TF32 exists on CUDA GPUs only")
def test_ieee_fp32_convolution_on_cuda_matches_float64() -> None:
    """On Ampere+ the default (TF32) conv is ~1e-3 off; inside ieee_fp32 it is fp32-exact."""
    torch.manual_seed(0)
    x, w = torch.randn(1, 64, 64, 64, device="cuda"), torch.randn(64, 64, 3, 3, device="cuda") / 24
    want = torch.nn.functional.conv2d(x.double(), w.double(), padding=1)
    with ieee_fp32():
        got = torch.nn.functional.conv2d(x, w, padding=1)
    assert (got.double() - want).abs().max() < 1e-4


def test_cpu_and_gpu_onnx_runtimes_are_alternative_extras() -> None:
    """onnxruntime and onnxruntime-gpu share one folder (onnxruntime #26996, #7748): no
    install of f2n may pull both, so the base has neither and each extra has one."""
    import re

    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]

    def runtimes(requirements: list[str]) -> set[str]:
        names = {re.split(r"[\s<>=!~\[;]", requirement, maxsplit=1)[0].lower() for requirement in requirements}
        return names & {"onnxruntime", "onnxruntime-gpu"}

    extras = project["optional-dependencies"]
    assert runtimes(project["dependencies"]) == set()
    assert runtimes(extras["cpu"]) == {"onnxruntime"} and runtimes(extras["gpu"]) == {"onnxruntime-gpu"}
    assert all(len(runtimes(requirements)) <= 1 for requirements in extras.values())
