"""File helpers every part of f2n shares: SHA-256 of a file, and atomic writes (temp file
beside the destination, then rename: a reader never sees half a file, a failure leaves none)."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

from f2n.errors import ConfigError

CHUNK = 1 << 20
# Temp files are named ``.<destination name>.f2n-<8 random hex digits>.tmp``,
# so that only f2n's own leftovers are ever cleaned up.
TEMP_MARK = "f2n-"
TEMP_NAME = re.compile(r"^\..+\.f2n-[a-z0-9_]{8}\.tmp$")
# A temp file untouched this long before a run started is a leftover (a process killed at the
# rename), not the write in progress of another run into the same folder.
STALE_TEMP_SECONDS = 600


def f2n_home() -> Path:
    """f2n's cache folder (weights, engines, the compiled extension): ``$F2N_HOME``,
    default ``~/.cache/f2n``, read from the environment at each call."""
    return Path(os.environ.get("F2N_HOME") or Path.home() / ".cache" / "f2n").expanduser()


def writable_home() -> Path:
    """``f2n_home()``, created if needed: a ConfigError naming it when it cannot hold files
    (a regular file, a read-only folder), before anything is built or downloaded into it."""
    home = f2n_home()
    try:
        home.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=home):
            pass
    except OSError as error:
        raise ConfigError(f"the f2n cache folder {home} is not usable ({error.strerror or error}); "
                          "set F2N_HOME to a writable folder (default ~/.cache/f2n)") from None
    return home


def machine_lock(destination: Path) -> FileLock:
    """The lock of one cache file (a weight file, the engine probe's figures), outside the cache
    (which may be read-only): one per file and machine, shared by every process there."""
    key = hashlib.sha256(str(destination.resolve()).encode()).hexdigest()[:24]
    folder = Path(tempfile.gettempdir()) / f"f2n-locks-{os.getuid()}"  # per user: /tmp is shared
    folder.mkdir(exist_ok=True)
    return FileLock(folder / f"{key}.lock")


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
    temp, mode = _create_temp(destination)
    try:
        write(temp)
        # Some writers (safetensors) replace the temp file with a fresh 0600 one: give the
        # result the mode the process's umask gave the temp file when it was created.
        os.chmod(temp, mode)
        os.replace(temp, destination)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    return destination


def _create_temp(destination: Path) -> tuple[Path, int]:
    """A new, empty temp file beside ``destination`` and its mode. Created 0666 less the umask, as
    any file is: reading the umask would mean setting it, for every thread of the process."""
    while True:
        temp = destination.with_name(f".{destination.name}.{TEMP_MARK}{secrets.token_hex(4)}.tmp")
        try:
            handle = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        mode = stat.S_IMODE(os.fstat(handle).st_mode)
        os.close(handle)
        return temp, mode


def remove_stale_temps(folder: Path, started: float) -> list[Path]:
    """Delete f2n's temp files in ``folder`` last modified ``STALE_TEMP_SECONDS`` or more before
    ``started`` (a time.time()): what a SIGKILL between write and rename leaves. Returns them."""
    removed = []
    for path in folder.iterdir() if folder.is_dir() else ():
        try:
            if TEMP_NAME.match(path.name) and path.is_file() and path.stat().st_mtime <= started - STALE_TEMP_SECONDS:
                path.unlink()
                removed.append(path)
        except FileNotFoundError:  # another run removed it first
            continue
    return removed


def write_bytes_atomic(destination: Path, data: bytes) -> Path:
    return write_atomic(destination, lambda temp: temp.write_bytes(data))


def write_text_atomic(destination: Path, text: str) -> Path:
    return write_atomic(destination, lambda temp: temp.write_text(text, encoding="utf-8"))
