"""Fused RRDB operators (C++ and CUDA) for ESRGAN's RRDBNet, built on demand.

Nothing is compiled or loaded at import: call ``load(build=True)`` (or run
``python -m f2n.cpp_ext build`` once and ``load()`` later). Loading registers the fused op
into RRDBNet with the mode ``F2N_FUSED_RRDB=auto|on|off`` names (read then, once);
``use_fused_rrdb(mode)`` changes it later.
"""

from f2n.cpp_ext.build import default_build_dir, is_loaded
from f2n.cpp_ext.dispatch import FUSED_ENV, fused_mode, load, use_fused_rrdb
from f2n.cpp_ext.ops import fused_rrdb

__all__ = ["FUSED_ENV", "default_build_dir", "fused_mode", "fused_rrdb", "is_loaded", "load", "use_fused_rrdb"]
