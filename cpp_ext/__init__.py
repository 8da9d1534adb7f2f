"""Fused RRDB operators (C++ and CUDA) for ESRGAN's RRDBNet, built on demand.

Nothing is compiled or loaded at import: call ``load(build=True)`` (or run
``python -m f2n.cpp_ext build`` once and ``load()`` later). RRDBNet then uses the
fused path; ``F2N_FUSED_RRDB=auto|on|off`` (read at call time) overrides it.
"""

from f2n.cpp_ext.build import default_build_dir, is_loaded, load
from f2n.cpp_ext.dispatch import FUSED_ENV, fused_mode, use_fused
from f2n.cpp_ext.ops import fused_rrdb

__all__ = ["FUSED_ENV", "default_build_dir", "fused_mode", "fused_rrdb", "is_loaded", "load", "use_fused"]
