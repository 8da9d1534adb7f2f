"""``make_engine``: the one factory of SR engines, behind ``--engine`` of every command
(f2n-adapt-and-run, its demo, f2n-batch, f2n-eval, f2n-bench). Each engine starts with
``loaded.model``'s weights and takes a photo's θ_n through ``set_weights`` without being
rebuilt; compiled artifacts come from the cache under ``$F2N_HOME/engines``."""

import torch

from f2n.errors import ConfigError, EngineUnavailableError
from f2n.export.aoti import load_aoti_engine
from f2n.export.cache import cache_dir
from f2n.export.ncnn_engine import NcnnEngine, vulkan_from_environment
from f2n.export.onnx_export import cached_onnx
from f2n.export.openvino_engine import OpenVinoEngine, check_precision, import_openvino
from f2n.export.ort_engine import OrtEngine
from f2n.export.protocol import SREngine
from f2n.export.torch_engine import TorchEngine
from f2n.export.trt_config import tile_profile
from f2n.export.trt_engine import import_tensorrt, load_trt_engine
from f2n.weights.sr import LoadedSR

ENGINES = ("torch", "onnx", "aoti", "trt", "openvino", "ncnn")
DEVICES = ("cpu", "cuda")


def make_engine(name: str, loaded: LoadedSR, *, device: str, precision: str, tile: int, batch_size: int = 1,
                replacement: str | None = None, threads: int = 0) -> SREngine:
    """An engine for ``loaded.model``. ``tile``/``batch_size`` (LR px, tiles per run)
    size the TensorRT optimization profile; the other engines take any shape.
    ``replacement`` (how new weights reach the graph; None: the engine's default) tunes ONNX Runtime
    and OpenVINO. ``threads`` (0: the library's default) is every CPU engine's thread count: ONNX
    Runtime's and OpenVINO's own pools; for torch and AOTInductor torch's intra-op pool, which is
    the process's (``torch.set_num_threads``); ncnn's own option. TensorRT runs on the GPU. ncnn runs
    through Vulkan on a hardware GPU whatever ``device`` says (``$F2N_NCNN_VULKAN``: 1 forces it, 0
    keeps the CPU)."""
    if name not in ENGINES:
        raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, got {name!r}")
    if device not in DEVICES:
        raise ConfigError(f"device must be {' or '.join(DEVICES)}, got {device!r}")
    if threads and device == "cpu" and name in ("torch", "aoti"):
        torch.set_num_threads(threads)
    if name == "torch":
        return TorchEngine(loaded.model, device=device, precision=precision)
    if name == "ncnn":
        return NcnnEngine(loaded.model, precision=precision, vulkan=vulkan_from_environment(), threads=threads)
    weights = loaded.model.state_dict()
    tuning = {"threads": threads, **({"replacement": replacement} if replacement is not None else {})}
    if name == "onnx":
        if device == "cpu" and precision != "fp32":
            raise ConfigError(f"--engine onnx on the CPU runs fp32 only, got {precision}; use --precision fp32 (or --engine aoti for bf16)")
        return OrtEngine(cached_onnx(loaded.model, precision=precision), weights, device=device, **tuning)
    if name == "aoti":
        return load_aoti_engine(loaded.model, device=device, precision=precision)
    if name == "openvino":
        if device != "cpu":
            raise EngineUnavailableError("--engine openvino runs on the CPU; on CUDA use --engine trt or --engine torch")
        check_precision(precision, import_openvino().Core())  # say what is wrong before exporting anything
        return OpenVinoEngine(cached_onnx(loaded.model, precision="fp32"), weights, precision=precision, **tuning)
    if device != "cuda":
        raise EngineUnavailableError("--engine trt runs on CUDA GPUs only; on the CPU use --engine onnx or --engine torch")
    import_tensorrt()  # say what is missing before exporting anything
    # TensorRT takes the fp32 graph and converts the weights itself at build and at every refit.
    onnx_path = cached_onnx(loaded.model, precision="fp32")
    return load_trt_engine(onnx_path, weights, precision=precision, profile=tile_profile(tile, batch_size), cache_dir=cache_dir("trt"))
