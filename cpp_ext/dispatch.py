"""Which RRDB path RRDBNet takes: this package registers the fused op into the network
(:func:`f2n.nets.rrdbnet.register_fused_rrdb`) with a mode, read once, never per call.

``F2N_FUSED_RRDB`` (read by :func:`use_fused_rrdb` when ``load()`` loads the extension, or
given to it): ``auto`` (default) takes the fused op where the loaded library has kernels for
the tensor's device; ``on`` insists (a device without kernels, or no library, is an
EngineUnavailableError); ``off`` always takes the plain block. While exporting (ONNX,
torch.export, tracing) the plain block is always used, so exported graphs hold standard
convolutions only; under autocast and forward-mode differentiation (torch.func.jvp) too.
"""

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from torch._C._functorch import TransformType
from torch._functorch.pyfunctorch import retrieve_current_functorch_interpreter

from f2n.cpp_ext.build import BUILD_HINT, is_loaded, load_library, loaded_with_cuda
from f2n.cpp_ext.ops import fused_rrdb
from f2n.errors import ConfigError, EngineUnavailableError
from f2n.nets.rrdbnet import register_fused_rrdb

FUSED_ENV = "F2N_FUSED_RRDB"
FusedMode = Literal["auto", "on", "off"]
_MODES: tuple[FusedMode, ...] = ("auto", "on", "off")


def fused_mode() -> FusedMode:
    """The mode ``F2N_FUSED_RRDB`` asks for."""
    mode = os.environ.get(FUSED_ENV, "auto").strip().lower()
    if mode not in _MODES:
        raise ConfigError(f"{FUSED_ENV}={mode!r} is not one of {', '.join(_MODES)}")
    return mode  # type: ignore[return-value]


class FusedDispatch:
    """The fused op as RRDBNet sees it (:class:`f2n.nets.rrdbnet.FusedRRDB`)."""

    def __init__(self, insist: bool) -> None:
        self.insist = insist  # mode "on": a device without kernels is an error, not the plain block

    def applies(self, x: torch.Tensor) -> bool:
        # Autocast has no rule for the op; the plain block gets autocast's casts exactly. Nor has
        # forward mode (torch.func.jvp): the op defines no jvp.
        if _exporting() or torch.is_autocast_enabled(x.device.type) or _forward_mode():
            return False
        if _supports(x.device):
            return True
        if self.insist:
            raise EngineUnavailableError(f"{FUSED_ENV}=on but the f2n.cpp_ext extension is built without "
                                         f"{x.device.type} kernels; {BUILD_HINT} and call f2n.cpp_ext.load()")
        return False

    def __call__(self, x: torch.Tensor, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor]) -> torch.Tensor:
        return fused_rrdb(x, weights, biases)


def load(build: bool = False, build_dir: Path | None = None, cuda: bool | None = None, verbose: bool = False) -> Path:
    """Load the fused RRDB operators (:func:`f2n.cpp_ext.build.load_library`: ``build=False`` only
    loads a library built earlier, ``build=True`` compiles it first when the cache has none) and
    register them into RRDBNet as ``F2N_FUSED_RRDB`` says (read now, once). Returns the library
    path; raises EngineUnavailableError, with how to build, when no library can be loaded."""
    library = load_library(build=build, build_dir=build_dir, cuda=cuda, verbose=verbose)
    use_fused_rrdb()
    return library


def use_fused_rrdb(mode: str | None = None) -> FusedMode:
    """Register the fused op into RRDBNet for ``mode`` (None: ``F2N_FUSED_RRDB``, read now) and
    return the mode; ``off``, or ``auto`` before the library is loaded, registers the plain block."""
    mode = fused_mode() if mode is None else mode.strip().lower()
    if mode not in _MODES:
        raise ConfigError(f"fused RRDB mode {mode!r} is not one of {', '.join(_MODES)}")
    if mode == "on" and not is_loaded():
        raise EngineUnavailableError(
            f"{FUSED_ENV}=on but the f2n.cpp_ext extension is not loaded; {BUILD_HINT} and call f2n.cpp_ext.load()")
    register_fused_rrdb(FusedDispatch(insist=mode == "on") if mode != "off" and is_loaded() else None)
    return mode  # type: ignore[return-value]


def _exporting() -> bool:
    return torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting() or torch.jit.is_tracing()


def _forward_mode() -> bool:
    """A torch.func.jvp transform is running (functorch's innermost transform is Jvp)."""
    return (torch._C._are_functorch_transforms_active()
            and retrieve_current_functorch_interpreter().key() == TransformType.Jvp)


def _supports(device: torch.device) -> bool:
    return device.type == "cpu" or (device.type == "cuda" and loaded_with_cuda())
