"""Which RRDB path RRDBNet takes, decided at call time.

``F2N_FUSED_RRDB``: ``auto`` (default) takes the fused op when the extension has
been loaded in this process and supports the tensor's device; ``on`` insists and
raises EngineUnavailableError otherwise; ``off`` always takes the plain block.
While exporting (ONNX, torch.export, tracing) the plain block is always used, so
exported graphs hold standard convolutions only; under autocast too.
"""

import os
from typing import Literal

import torch

from f2n.cpp_ext.build import BUILD_HINT, is_loaded, loaded_with_cuda
from f2n.errors import ConfigError, EngineUnavailableError

FUSED_ENV = "F2N_FUSED_RRDB"
FusedMode = Literal["auto", "on", "off"]
_MODES: tuple[FusedMode, ...] = ("auto", "on", "off")


def fused_mode() -> FusedMode:
    mode = os.environ.get(FUSED_ENV, "auto").strip().lower()
    if mode not in _MODES:
        raise ConfigError(f"{FUSED_ENV}={mode!r} is not one of {', '.join(_MODES)}")
    return mode  # type: ignore[return-value]


def _exporting() -> bool:
    return torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting() or torch.jit.is_tracing()


def _supports(device: torch.device) -> bool:
    return device.type == "cpu" or (device.type == "cuda" and loaded_with_cuda())


def use_fused(x: torch.Tensor) -> bool:
    """True when the RRDB block applied to ``x`` should run as ``torch.ops.f2n.rrdb``."""
    mode = fused_mode()
    # Autocast has no rule for the op; the plain block gets autocast's casts exactly.
    if mode == "off" or _exporting() or torch.is_autocast_enabled(x.device.type):
        return False
    if is_loaded() and _supports(x.device):
        return True
    if mode == "on":
        what = "not loaded" if not is_loaded() else f"built without {x.device.type} kernels"
        raise EngineUnavailableError(
            f"{FUSED_ENV}=on but the f2n.cpp_ext extension is {what}; {BUILD_HINT} and call f2n.cpp_ext.load()"
        )
    return False
