"""Give the heap memory a photo's adaptation freed back to the operating system before its tiles.

glibc keeps what the face stage and the inner loop free (many mid-sized arrays and tensors) in
its heap instead of returning it, and the tiles and output canvas that follow are fresh large
allocations: without a trim, the adaptation's working set stays resident under the tiling peak
(measured: about 0.2 GB of a 3-megapixel photo's 0.5 GB face-run overhead, see
docs/benchmarks.md). ``malloc_trim(0)`` returns it; without glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from functools import lru_cache


@lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
    except (OSError, AttributeError, TypeError):  # no C library found, or not glibc
        return None


def release_free_memory() -> None:
    """Return the heap's free pages to the operating system (glibc's malloc_trim)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
