"""ncnn engine: a photo's θ_n run by ncnn's own kernels, on the CPU or through Vulkan.

ncnn is what Real-ESRGAN-ncnn-vulkan, Upscayl and chaiNNer run; on x86 CPUs without native
bf16 its fp32 convolutions are the fastest measured (issue 27), and its Vulkan backend reaches
AMD, Intel and Apple GPUs. The network is written as an ncnn graph in memory by the converter in
reverse (:func:`f2n.weights.ncnn_convert.rrdbnet_param` / ``rrdbnet_bin``): the ``.param`` text
once, the ``.bin`` blob of θ_n per photo, both handed to ``load_param_mem`` / ``load_model_mem``
(no file round trip; ncnn copies the blob, measured: the net runs after the bytes are freed).
``set_weights`` builds a new ``ncnn.Net`` (ncnn packs and winograd-transforms the weights when it
loads them), then swaps it in, so a run in progress keeps a consistent weight set.

Precision: ``fp32`` turns ncnn's fp16/bf16 storage and arithmetic off (parity with the torch
engine within 1e-4); ``fp16`` turns fp16 storage and arithmetic on, which ncnn honours where
the device has fp16 (Vulkan GPUs, Arm, x86 with AVX512-FP16) and ignores elsewhere. A tile that
comes out NaN/Inf in fp16 is redone by the fp32 twin (:mod:`f2n.export.fallback`).

Vulkan (``vulkan``): None (default) uses it where a hardware Vulkan GPU is present (a CPU
implementation such as Mesa's lavapipe is slower than ncnn's CPU kernels), True forces it on the
first Vulkan device (lavapipe in the tests), False keeps the CPU. ``$F2N_NCNN_VULKAN`` (1/0) sets
it for the commands.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch import nn

from f2n.errors import ConfigError, EngineUnavailableError
from f2n.export.fallback import Fp32Twin
from f2n.stderr import quiet_native_stderr
from f2n.weights.fit import check_weight_set, weight_shapes
from f2n.weights.ncnn_convert import rrdbnet_bin, rrdbnet_param
from f2n.weights.sr import infer_hyperparameters

PRECISIONS = ("fp32", "fp16")
VULKAN_ENV = "F2N_NCNN_VULKAN"
VULKAN_CPU_TYPE = 3  # ncnn GpuInfo.type(): 0 discrete, 1 integrated, 2 virtual, 3 cpu (lavapipe, SwiftShader)
INPUT, OUTPUT = "data", "output"


def import_ncnn() -> ModuleType:
    """The ``ncnn`` package, or one line saying how to get it."""
    try:
        import ncnn
    except ImportError as error:
        raise EngineUnavailableError(
            f"--engine ncnn needs the ncnn package ({error}); pip install ncnn (in the [cpu] extra), or use --engine torch"
        ) from None
    return ncnn


@lru_cache(maxsize=1)
def vulkan_devices() -> tuple[int, ...]:
    """Types of the Vulkan devices ncnn sees (VULKAN_CPU_TYPE for a software one); empty without Vulkan."""
    ncnn = import_ncnn()
    if not hasattr(ncnn, "get_gpu_count"):  # a wheel built without Vulkan
        return ()
    with quiet_native_stderr():
        return tuple(ncnn.get_gpu_info(index).type() for index in range(ncnn.get_gpu_count()))


def use_vulkan(requested: bool | None, devices: tuple[int, ...]) -> bool:
    """Whether to run through Vulkan: as requested, else only on a hardware GPU (module docstring)."""
    if requested is None:
        return any(kind != VULKAN_CPU_TYPE for kind in devices)
    if requested and not devices:
        raise EngineUnavailableError("ncnn Vulkan was asked for, but ncnn sees no Vulkan device (install a GPU driver, "
                                     f"or Mesa's lavapipe: apt-get install mesa-vulkan-drivers); set {VULKAN_ENV}=0")
    return requested


def vulkan_from_environment() -> bool | None:
    value = os.environ.get(VULKAN_ENV, "").strip().lower()
    if value in ("", "auto"):
        return None
    if value in ("1", "0"):
        return value == "1"
    raise ConfigError(f"${VULKAN_ENV} must be 1, 0 or auto, got {value!r}")


class NcnnEngine:
    """:class:`~f2n.runtime.types.SREngine` running an x4 RRDBNet with ncnn."""

    name = "ncnn"

    def __init__(self, model: nn.Module, *, precision: str = "fp32", vulkan: bool | None = None,
                 threads: int = 0) -> None:
        if precision not in PRECISIONS:
            raise ConfigError(f"--engine ncnn precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self._ncnn = import_ncnn()
        state = model.state_dict()
        self._hyper = infer_hyperparameters(state, Path("the ncnn engine's network"))
        if self._hyper["scale"] != 4:
            raise ConfigError(f"--engine ncnn runs x4 networks, this one is x{self._hyper['scale']}")
        self.precision = precision
        # no device probe when the CPU is asked for: the probe loads the Vulkan driver (Mesa's lavapipe
        # brings its own LLVM, which crashes a process that also holds TensorFlow's)
        self.vulkan = False if vulkan is False else use_vulkan(vulkan, vulkan_devices())
        self.threads = threads or len(os.sched_getaffinity(0))  # 0: every core this process may use
        value_range = getattr(model, "value_range", "unit")
        self._param = rrdbnet_param(self._hyper, signed=value_range == "signed", input_blob=INPUT, output_blob=OUTPUT)
        self._shapes = weight_shapes(state)
        self._twin = Fp32Twin("cpu", self.name, value_range) if precision != "fp32" else None
        self.set_weights(state)

    def _new_net(self):
        net = self._ncnn.Net()
        options = net.opt
        low = self.precision == "fp16"
        for flag in ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic"):
            setattr(options, flag, low)
        options.use_bf16_storage = False
        options.num_threads = self.threads
        options.use_vulkan_compute = self.vulkan
        return net

    def set_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        check_weight_set(self._shapes, state_dict, what="weights", target="the ncnn engine's network")
        net = self._new_net()
        if net.load_param_mem(self._param) != 0:
            raise RuntimeError("ncnn refused the RRDBNet graph f2n wrote")
        net.load_model_mem(rrdbnet_bin(state_dict, self._hyper))
        self._net = net  # swapped whole: a run in progress keeps the previous net
        if self._twin is not None:
            self._twin.follow(state_dict)

    def run(self, tiles: torch.Tensor) -> torch.Tensor:
        net, ncnn = self._net, self._ncnn
        outputs = []
        for tile in tiles.numpy():  # ncnn's extractor takes one CHW image
            with net.create_extractor() as extractor:
                # cloned into ncnn's aligned layout: a Mat over numpy memory has an unaligned channel
                # step, which the in-place input mapping of a signed θ overran (a segfault)
                extractor.input(INPUT, ncnn.Mat(np.ascontiguousarray(tile, dtype=np.float32)).clone())
                status, output = extractor.extract(OUTPUT)
                if status != 0:
                    raise RuntimeError(f"ncnn extract returned {status}, expected 0")
                outputs.append(np.array(output))  # a copy: the Mat's memory belongs to the extractor
        return torch.from_numpy(np.stack(outputs))

    def run_fp32(self, tiles: torch.Tensor) -> torch.Tensor:
        """``run`` in fp32: the engine itself when it computes fp32, else the fp32 twin."""
        return self.run(tiles) if self._twin is None else self._twin.run(tiles)
