"""AOTInductor engine: an RRDBNet compiled ahead of time into a .pt2 package whose
weights are swapped per photo with ``load_constants`` (no recompilation).

Every parameter must stay a swappable constant. Inductor inlines small tensors
(biases of a few channels, e.g. ``conv_last.bias`` with 3 values) into the kernels
unless ``always_keep_tensor_constants`` is set, and freezing (off by default) would
fold weights; the engine refuses a package whose constants do not cover every
parameter. Batch, height and width are dynamic (the tiler's last batch and edge tiles
are smaller). Packages are cached under ``$F2N_HOME/engines/aoti`` keyed by a hash of the
architecture (parameter shapes), torch version, device (CPU ISA / GPU model),
precision and compile settings; a package that fails to load is rebuilt.
"""

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import torch
from torch import nn

from f2n.errors import ConfigError, EngineUnavailableError, WeightsError
from f2n.export.cache import architecture, cache_dir, digest

AOTI_PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
INDUCTOR_CONFIGS = MappingProxyType({"always_keep_tensor_constants": True})  # no constant inlining; freezing stays off
MAX_BATCH = 64
MAX_SIDE = 4096  # LR pixels per tile side
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


def package_key(model: nn.Module, *, device: str, precision: str) -> str:
    fields = {
        "architecture": architecture(model),
        "torch": torch.__version__,
        "device": device_tag(device),
        "precision": precision,
        "inductor_configs": dict(INDUCTOR_CONFIGS),
        "limits": [MAX_BATCH, MAX_SIDE],
        "format": PACKAGE_FORMAT,
    }
    return digest(fields)


def _dtype(precision: str) -> torch.dtype:
    if precision not in AOTI_PRECISIONS:
        raise ConfigError(f"AOTInductor precision must be one of {sorted(AOTI_PRECISIONS)}, got {precision!r}")
    return AOTI_PRECISIONS[precision]


def compile_package(model: nn.Module, path: str | Path, *, device: str = "cpu", precision: str = "fp32") -> Path:
    """torch.export (dynamic N, H, W) + aoti_compile_and_package, written atomically to ``path``."""
    dtype = _dtype(precision)
    net = copy.deepcopy(model).to(device=device, dtype=dtype).eval().requires_grad_(False)
    sample = torch.rand(SAMPLE, device=device, dtype=dtype)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    height = torch.export.Dim("height", min=2, max=MAX_SIDE)
    width = torch.export.Dim("width", min=2, max=MAX_SIDE)
    program = torch.export.export(net, (sample,), dynamic_shapes=({0: batch, 2: height, 3: width},))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.pt2")
    try:
        torch._inductor.aoti_compile_and_package(program, package_path=str(tmp), inductor_configs=dict(INDUCTOR_CONFIGS))  # a copy: Inductor adds keys to it
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


class AotiEngine:
    """:class:`~f2n.runtime.types.SREngine` running an AOTInductor package."""

    name = "aoti"

    def __init__(self, package: str | Path, weights: Mapping[str, torch.Tensor], *, device: str = "cpu", precision: str = "fp32") -> None:
        self.device = torch.device(device)
        self.dtype = _dtype(precision)
        self._runner = torch._inductor.aoti_load_package(str(package))
        self._shapes = {key: tuple(value.shape) for key, value in weights.items()}
        constants = set(self._runner.get_constant_fqns())
        not_swappable = sorted(self._shapes.keys() - constants)
        if not_swappable:
            raise WeightsError(
                f"{len(not_swappable)} weights are baked into the AOTInductor package {package} (e.g. {', '.join(not_swappable[:3])}); "
                f"expected all {len(self._shapes)} as constants: recompile with {dict(INDUCTOR_CONFIGS)}"
            )
        self.set_weights(weights)

    def set_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        missing, extra = self._shapes.keys() - state_dict.keys(), state_dict.keys() - self._shapes.keys()
        if missing or extra:
            raise WeightsError(f"weights do not fit the AOTInductor package: missing {sorted(missing)[:3]}, unexpected {sorted(extra)[:3]}")
        constants = {}
        for key, value in state_dict.items():
            if tuple(value.shape) != self._shapes[key]:
                raise WeightsError(f"weight {key} has shape {tuple(value.shape)}, expected {self._shapes[key]}")
            constants[key] = value.detach().to(device=self.device, dtype=self.dtype).contiguous()
        self._runner.load_constants(constants, check_full_update=True)

    def run(self, tiles: torch.Tensor) -> torch.Tensor:
        if tiles.shape[0] > MAX_BATCH or max(tiles.shape[2:]) > MAX_SIDE or min(tiles.shape[2:]) < 2:
            raise ConfigError(f"AOTInductor package takes up to {MAX_BATCH} tiles of 2..{MAX_SIDE} px, got {tuple(tiles.shape)}")
        with torch.inference_mode():
            out = self._runner(tiles.to(device=self.device, dtype=self.dtype).contiguous())
        return out.float().cpu()


def load_aoti_engine(model: nn.Module, *, device: str = "cpu", precision: str = "fp32") -> AotiEngine:
    """The engine for ``model`` from the package cache, compiling on a miss (minutes for
    the full network on a small CPU) and rebuilding a cached package that fails to load."""
    path = cache_dir("aoti") / f"rrdbnet-{package_key(model, device=device, precision=precision)}.pt2"
    weights = model.state_dict()
    if path.is_file():
        try:
            return AotiEngine(path, weights, device=device, precision=precision)
        except (RuntimeError, OSError, ValueError, WeightsError):
            path.unlink()  # stale or foreign: rebuild below
    compile_package(model, path, device=device, precision=precision)
    return AotiEngine(path, weights, device=device, precision=precision)
