"""Where a batch's files live: a local path or an fsspec URI (``s3://…``, ``gs://…``, ``memory://…``).

Photos, outputs and the workers' attempt counts may each be either; ``file://`` URIs are
local paths. The pipeline itself reads and writes local files only: a remote photo is
copied to a temp file first, and a remote output is written to a temp file and uploaded
whole (one ``put``, which object stores make atomic). Only the driver's manifest must be
local (it is appended to, fsynced and locked).
"""

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from f2n.errors import ConfigError, F2NError, InputImageError
from f2n.fileio import write_text_atomic

FILE_SCHEME = "file://"


def is_uri(spec: str) -> bool:
    return "://" in spec and not spec.startswith(FILE_SCHEME)


def location(spec: str | Path) -> str:
    """A folder or file as the batch names it: a URI without a trailing slash, or an absolute path."""
    spec = str(spec).removeprefix(FILE_SCHEME)
    return spec.rstrip("/") if is_uri(spec) else str(Path(spec).expanduser().resolve())


def join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if is_uri(folder) else str(Path(folder) / name)


def filesystem(uri: str) -> tuple[Any, str]:
    """fsspec's file system of ``uri`` and the path in it (ImportError without fsspec or the protocol's library)."""
    import fsspec

    return fsspec.core.url_to_fs(uri)


@contextmanager
def local_copy(source: str) -> Iterator[Path]:
    """A local path is used in place; a URI is copied to a temp file of the same name first."""
    if not is_uri(source):
        yield Path(source)
        return
    with tempfile.TemporaryDirectory(prefix="f2n-batch-") as folder:
        path = Path(folder) / PurePosixPath(source).name
        try:
            fs, remote = filesystem(source)
            fs.get_file(remote, str(path))
        except (ImportError, ValueError, OSError) as error:
            raise InputImageError(f"cannot fetch {source}: {error}") from None
        yield path


@contextmanager
def written_to(output: str) -> Iterator[Path]:
    """The local file to write ``output`` through: the output itself, or a temp file that is
    uploaded to the URI when the block ends without an error (nothing is uploaded otherwise)."""
    if not is_uri(output):
        yield Path(output)
        return
    with tempfile.TemporaryDirectory(prefix="f2n-batch-") as folder:
        path = Path(folder) / PurePosixPath(output).name
        yield path
        if path.exists():  # a photo that failed before writing leaves nothing to upload
            try:
                fs, remote = filesystem(output)
                fs.put_file(str(path), remote)
            except (ImportError, ValueError, OSError) as error:
                raise F2NError(f"cannot write {output}: {error}") from None  # this photo's failed line


def make_folder(folder: str) -> None:
    """Create ``folder`` (a ConfigError, before any work, when it cannot be)."""
    try:
        if is_uri(folder):
            fs, path = filesystem(folder)
            fs.makedirs(path, exist_ok=True)
        else:
            Path(folder).mkdir(parents=True, exist_ok=True)
    except ImportError as error:
        raise ConfigError(f"{folder} needs fsspec and its protocol's library ({error}): "
                          "pip install 'f2n[ray]'") from None
    except (ValueError, OSError) as error:
        reason = getattr(error, "strerror", None) or error
        raise ConfigError(f"cannot create output folder {folder}: {reason}") from None


def remove_folder(folder: str) -> None:
    """Remove ``folder`` and what it holds, if it exists."""
    if is_uri(folder):
        fs, path = filesystem(folder)
        if fs.exists(path):
            fs.rm(path, recursive=True)
    else:
        shutil.rmtree(folder, ignore_errors=True)


def read_text(path: str) -> str | None:
    """The text of ``path``, or None where it does not exist."""
    if not is_uri(path):
        return Path(path).read_text() if Path(path).exists() else None
    fs, remote = filesystem(path)
    return fs.cat_file(remote).decode() if fs.exists(remote) else None


def write_text(path: str, text: str) -> None:
    """Replace ``path`` with ``text`` whole (atomically on a local disk; one put on a URI)."""
    if is_uri(path):
        fs, remote = filesystem(path)
        fs.pipe_file(remote, text.encode())
    else:
        write_text_atomic(Path(path), text)
