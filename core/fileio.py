"""File helpers every part of f2n shares: SHA-256 of a file, and atomic writes (temp file
beside the destination, then rename: a reader never sees half a file, a failure leaves none)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

CHUNK = 1 << 20


def f2n_home() -> Path:
    """f2n's cache folder (weights, engines, the compiled extension): ``$F2N_HOME``,
    default ``~/.cache/f2n``, read from the environment at each call."""
    return Path(os.environ.get("F2N_HOME") or Path.home() / ".cache" / "f2n").expanduser()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def write_atomic(destination: Path, write: Callable[[Path], None]) -> Path:
    """Let ``write`` fill a temp file beside ``destination``, then rename it into
    place: readers never see a half-written file, a failure leaves nothing behind."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(Path(temp))
        # mkstemp makes 0600 files, and some writers (safetensors) replace the temp file
        # with a fresh 0600 one: give the result the usual mode once it is written.
        os.chmod(temp, 0o666 & ~_umask())
        os.replace(temp, destination)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    return destination


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def write_bytes_atomic(destination: Path, data: bytes) -> Path:
    return write_atomic(destination, lambda temp: temp.write_bytes(data))


def write_text_atomic(destination: Path, text: str) -> Path:
    return write_atomic(destination, lambda temp: temp.write_text(text, encoding="utf-8"))
