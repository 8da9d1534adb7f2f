"""AOTInductor engine: an RRDBNet compiled ahead of time into a .pt2 package whose
weights are swapped per photo with ``load_constants`` (no recompilation).

Every parameter must stay a swappable constant. Inductor inlines small tensors
(biases of a few channels, e.g. ``conv_last.bias`` with 3 values) into the kernels
unless ``always_keep_tensor_constants`` is set, and freezing (off by default) would
fold weights; the engine refuses a package whose constants do not cover every
parameter. Batch, height and width are dynamic (the tiler's last batch and edge tiles
are smaller). Packages are cached under ``$F2N_HOME/engines/aoti`` keyed by a hash of the
architecture (parameter shapes) and value range, torch version, device (CPU ISA / GPU model),
precision and compile settings, with a sidecar recording that key and the package's
SHA-256: a package whose sidecar does not match (damaged, foreign, stale) is rebuilt.
fp16/bf16 packages redo NaN/Inf tiles through an fp32 twin (:mod:`f2n.export.fallback`),
built with the value range the package's metadata records.

On CUDA, Inductor compiles the package's C++ wrapper against the CUDA toolkit's headers
(pytorch issue #150442); a pip-only install has none, and a failed compile then says
so in one line. A CUDA allocation that fails inside the package reaches Python only as
"run_func_(...) API call failed"; the caching allocator's OOM count tells it apart, and
the engine raises ``torch.OutOfMemoryError`` so that the tiler halves the tile.
"""

import copy
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import torch
from torch import nn
from torch.nn import functional as F

from f2n.errors import ConfigError, EngineUnavailableError, WeightsError
from f2n.export.cache import (
    VALUE_RANGE_METADATA,
    cache_dir,
    cached_artifact,
    digest,
    graph_fields,
    is_trusted,
    record_artifact,
    recorded_range,
)
from f2n.export.fallback import Fp32Twin
from f2n.weights.fit import check_weight_set, weight_shapes

AOTI_PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
INDUCTOR_CONFIGS = MappingProxyType({"always_keep_tensor_constants": True})  # no constant inlining; freezing stays off
MAX_BATCH = 64
MAX_SIDE = 4096  # LR pixels per tile side
MIN_SIDE = 2  # torch.export specialises a dynamic side of 1
SAMPLE = (2, 3, 32, 32)  # batch 2: torch.export specialises a dimension traced at size 1
PACKAGE_FORMAT = 1  # bump when the compile recipe changes


def device_tag(device: str) -> str:
    """What generated code depends on: the CPU's vector ISA, or the GPU model."""
    if device == "cpu":
        return f"cpu-{torch.backends.cpu.get_cpu_capability()}"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise EngineUnavailableError("--engine aoti --device cuda needs CUDA, which is not available here; use --device cpu")
        major, minor = torch.cuda.get_device_capability()
        return f"cuda-{torch.cuda.get_device_name()}-sm{major}{minor}"
    raise ConfigError(f"AOTInductor device must be cpu or cuda, got {device!r}")


def package_fields(model: nn.Module, *, device: str, precision: str) -> dict:
    """Everything a compiled package depends on: its cache key and sidecar."""
    return {
        **graph_fields(model),
        "torch": torch.__version__,
        "device": device_tag(device),
        "precision": precision,
        "inductor_configs": dict(INDUCTOR_CONFIGS),
        "limits": [MAX_BATCH, MAX_SIDE],
        "format": PACKAGE_FORMAT,
    }


def package_key(model: nn.Module, *, device: str, precision: str) -> str:
    return digest(package_fields(model, device=device, precision=precision))


def _dtype(precision: str) -> torch.dtype:
    if precision not in AOTI_PRECISIONS:
        raise ConfigError(f"AOTInductor precision must be one of {sorted(AOTI_PRECISIONS)}, got {precision!r}")
    return AOTI_PRECISIONS[precision]


def quiet_cpp_extension() -> None:
    """Import torch.utils.cpp_extension (Inductor's compiler and package loader use it) with its
    import-time "No CUDA runtime is found" warning off: on a CPU machine with a CUDA toolkit it is
    noise on stderr, where f2n writes one-line messages only."""
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        import torch.utils.cpp_extension  # noqa: F401
    finally:
        logger.setLevel(level)


def missing_cuda_toolkit(cuda_home: str | None) -> str | None:
    """What is missing for AOTInductor on CUDA, or None when the toolkit's headers are there."""
    fix = "install the CUDA toolkit (nvcc and headers) and set $CUDA_HOME, or use --device cpu / --engine torch"
    if cuda_home is None:
        return f"AOTInductor on CUDA compiles against the CUDA toolkit, and none was found (no $CUDA_HOME, no nvcc on PATH): {fix}"
    header = Path(cuda_home) / "include" / "cuda_runtime_api.h"
    if not header.is_file():
        return f"AOTInductor on CUDA compiles against the CUDA toolkit, and CUDA_HOME={cuda_home} has no {header.relative_to(cuda_home)}: {fix}"
    return None


def aoti_out_of_memory(error: RuntimeError, ooms_before: int, ooms_after: int) -> bool:
    """True when the package's failure was a CUDA allocation (see the module docstring)."""
    return ooms_after > ooms_before or "out of memory" in str(error).lower()


def compile_package(model: nn.Module, path: str | Path, *, device: str = "cpu", precision: str = "fp32") -> Path:
    """torch.export (dynamic N, H, W) + aoti_compile_and_package, written atomically to ``path``."""
    quiet_cpp_extension()
    dtype = _dtype(precision)
    net = copy.deepcopy(model).to(device=device, dtype=dtype).eval().requires_grad_(False)
    sample = torch.rand(SAMPLE, device=device, dtype=dtype)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    height = torch.export.Dim("height", min=MIN_SIDE, max=MAX_SIDE)
    width = torch.export.Dim("width", min=MIN_SIDE, max=MAX_SIDE)
    program = torch.export.export(net, (sample,), dynamic_shapes=({0: batch, 2: height, 3: width},))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.pt2")
    try:
        configs = {**INDUCTOR_CONFIGS, "aot_inductor.metadata": {VALUE_RANGE_METADATA: net.value_range}}  # a new dict: Inductor adds keys to it
        torch._inductor.aoti_compile_and_package(program, package_path=str(tmp), inductor_configs=configs)
        os.replace(tmp, path)
    except Exception as error:  # Inductor wraps the compiler's failure in its own types
        from torch.utils import cpp_extension

        missing = missing_cuda_toolkit(cpp_extension.CUDA_HOME) if device == "cuda" else None
        if missing is not None:
            raise EngineUnavailableError(missing) from error
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return path


class AotiEngine:
    """:class:`~f2n.runtime.types.SREngine` running an AOTInductor package."""

    name = "aoti"

    def __init__(self, package: str | Path, weights: Mapping[str, torch.Tensor], *, device: str = "cpu", precision: str = "fp32") -> None:
        quiet_cpp_extension()
        self.device = torch.device(device)
        self.dtype = _dtype(precision)
        self._runner = torch._inductor.aoti_load_package(str(package))
        self._shapes = weight_shapes(weights)
        constants = set(self._runner.get_constant_fqns())
        not_swappable = sorted(self._shapes.keys() - constants)
        if not_swappable:
            raise WeightsError(
                f"{len(not_swappable)} weights are baked into the AOTInductor package {package} (e.g. {', '.join(not_swappable[:3])}); "
                f"expected all {len(self._shapes)} as constants: recompile with {dict(INDUCTOR_CONFIGS)}"
            )
        value_range = recorded_range(self._runner.get_metadata(), package)
        self._twin = Fp32Twin(device, self.name, value_range) if self.dtype != torch.float32 else None
        self.set_weights(weights)

    def set_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        check_weight_set(self._shapes, state_dict, what="weights", target="the AOTInductor package")
        constants = {key: value.detach().to(device=self.device, dtype=self.dtype).contiguous() for key, value in state_dict.items()}
        self._runner.load_constants(constants, check_full_update=True)
        if self._twin is not None:
            self._twin.follow(state_dict)

    def run(self, tiles: torch.Tensor) -> torch.Tensor:
        if tiles.shape[0] > MAX_BATCH or max(tiles.shape[2:]) > MAX_SIDE:
            raise ConfigError(f"AOTInductor package takes up to {MAX_BATCH} tiles of up to {MAX_SIDE} px, got {tuple(tiles.shape)}")
        height, width = tiles.shape[2:]
        if min(height, width) < MIN_SIDE:
            # torch.export specialises a side of 1, so the package takes sides >= 2: a 1-px strip
            # of a photo is run with its edge repeated and the result cropped back.
            tiles = F.pad(tiles, (0, max(0, MIN_SIDE - width), 0, max(0, MIN_SIDE - height)), mode="replicate")
        ooms = self._cuda_ooms()
        try:
            with torch.inference_mode():
                out = self._runner(tiles.to(device=self.device, dtype=self.dtype).contiguous())
        except RuntimeError as error:
            if self.device.type == "cuda" and aoti_out_of_memory(error, ooms, self._cuda_ooms()):
                raise torch.OutOfMemoryError(f"AOTInductor: {str(error).splitlines()[0]}") from error
            raise
        scale = out.shape[2] // tiles.shape[2]
        return out[:, :, : scale * height, : scale * width].float().cpu()

    def _cuda_ooms(self) -> int:
        return int(torch.cuda.memory_stats(self.device).get("num_ooms", 0)) if self.device.type == "cuda" else 0

    def run_fp32(self, tiles: torch.Tensor) -> torch.Tensor:
        """``run`` for an fp32 package; for fp16/bf16, the fp32 twin (:mod:`f2n.export.fallback`)."""
        return self.run(tiles) if self._twin is None else self._twin.run(tiles)


def load_aoti_engine(model: nn.Module, *, device: str = "cpu", precision: str = "fp32") -> AotiEngine:
    """The engine for ``model`` from the package cache, compiling on a miss (minutes for
    the full network on a small CPU). A cached package is used only when its sidecar
    records this key and its bytes (:mod:`f2n.export.cache`); otherwise it is rebuilt."""
    fields = package_fields(model, device=device, precision=precision)
    path = cached_artifact("aoti", f"rrdbnet-{digest(fields)}.pt2")
    if not is_trusted(path, fields):
        path = cache_dir("aoti") / path.name  # rebuilt where it can be written
        compile_package(model, path, device=device, precision=precision)
        record_artifact(path, fields)
    return AotiEngine(path, model.state_dict(), device=device, precision=precision)
