"""Native libraries' start-up chatter kept off f2n's stderr, which carries f2n's one-line messages."""

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """File descriptor 2 points at /dev/null inside the block: what C/C++ code writes there
    (TensorFlow's absl and oneDNN lines, ncnn's Vulkan probe) is dropped, whatever its own
    log settings say once Python runs."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
