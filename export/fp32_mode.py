"""IEEE fp32 for the checks that compare engines in fp32.

torch runs cuDNN convolutions in TF32 by default on Ampere and newer
(``torch.backends.cudnn.conv.fp32_precision == "tf32"``), and so does TensorRT unless
``BuilderFlag.TF32`` is cleared: an "fp32" result then differs from IEEE fp32 by about
1e-3, above the 1e-4 an fp32 export is verified to. Verification runs inside
:func:`ieee_fp32`; TF32 stays an explicit option (``f2n-export --tf32``).
"""

from collections.abc import Iterator
from contextlib import contextmanager

import torch

# (backend object, attribute) of torch >= 2.9's per-backend precision flags; cuDNN's RNN flag
# is set too, because the legacy getters refuse to answer when conv and RNN disagree.
_NEW_API = (("cudnn.conv", "fp32_precision"), ("cudnn.rnn", "fp32_precision"), ("cuda.matmul", "fp32_precision"))
_LEGACY_API = (("cudnn", "allow_tf32"), ("cuda.matmul", "allow_tf32"))


def _backend(path: str) -> object:
    backend: object = torch.backends
    for part in path.split("."):
        backend = getattr(backend, part)
    return backend


@contextmanager
def ieee_fp32() -> Iterator[None]:
    """fp32 convolutions and matrix products in IEEE fp32 (no TF32) inside the block;
    the previous settings come back after it."""
    new_api = hasattr(_backend("cudnn.conv"), "fp32_precision")
    flags = _NEW_API if new_api else _LEGACY_API
    value = "ieee" if new_api else False
    saved = [(_backend(path), name, getattr(_backend(path), name)) for path, name in flags]
    try:
        for backend, name, _ in saved:
            setattr(backend, name, value)
        yield
    finally:
        for backend, name, previous in saved:
            setattr(backend, name, previous)
