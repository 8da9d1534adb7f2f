"""ONNX Runtime as an optional dependency with two builds that exclude each other.

``onnxruntime`` (CPU) and ``onnxruntime-gpu`` install into the same ``onnxruntime``
folder; with both, whichever came last wins and the CUDA provider may vanish
(onnxruntime issues #26996, #7748). f2n therefore depends on neither and offers them
as the extras ``f2n[cpu]`` and ``f2n[gpu]``; this module says which to install when
neither is, and checks what a CUDA session really got: a CUDA/cuDNN mismatch makes
the CUDA provider fail at session creation and ORT silently carries on on the CPU.
"""

import re
from collections.abc import Sequence
from types import ModuleType

from f2n.errors import EngineUnavailableError

MISSING = (
    "ONNX Runtime is not installed: pip install 'f2n[cpu]' (onnxruntime), or on an NVIDIA GPU "
    "'f2n[gpu]' (onnxruntime-gpu); one of the two, never both"
)
CUDA_PROVIDER = "CUDAExecutionProvider"
_OUT_OF_MEMORY = re.compile(r"failed to allocate memory|out of memory|CUDA failure 2\b|cudaErrorMemoryAllocation", re.IGNORECASE)


def import_onnxruntime() -> ModuleType:
    try:
        import onnxruntime
    except ImportError as error:
        raise EngineUnavailableError(MISSING) from error
    return onnxruntime


def preload_cuda_libraries(ort: ModuleType) -> None:
    """Load the CUDA/cuDNN libraries of the nvidia-* pip packages (onnxruntime-gpu >= 1.21),
    so a pip-only install finds them; older versions rely on the system's."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        preload()


def check_providers(requested: Sequence[str], given: Sequence[str]) -> None:
    """Refuse a session that silently lost the CUDA provider it was asked for."""
    if CUDA_PROVIDER in requested and CUDA_PROVIDER not in given:
        raise EngineUnavailableError(
            f"ONNX Runtime was asked for CUDA but gave {', '.join(given) or 'no provider'}: its CUDA provider failed to load "
            "(usually a CUDA/cuDNN version that does not match this onnxruntime-gpu); install the onnxruntime-gpu build "
            "for your CUDA, or use --device cpu"
        )


def ort_out_of_memory(error: BaseException) -> bool:
    """True for ONNX Runtime's allocation failures (its BFC arena's "Failed to allocate
    memory for requested buffer", CUDA's "out of memory")."""
    return type(error).__module__.startswith("onnxruntime") and _OUT_OF_MEMORY.search(str(error)) is not None
