"""Keys and files of the compiled-artifact cache under ``$F2N_HOME`` (ONNX graphs,
AOTInductor packages, TensorRT plans). A key is a hash of everything the artifact
depends on, so a stale or foreign file is never picked up by name alone.

Artifacts that are expensive to rebuild and cannot be checked by loading them cheaply
(AOTInductor packages, TensorRT plans) get a JSON sidecar, ``<artifact>.json``, holding
their key fields and SHA-256; an artifact without a sidecar that matches both is
rebuilt, never trusted (a damaged file, one copied from another machine or written by
another f2n version)."""

import atexit
import hashlib
import json
import shutil
import tempfile
from functools import cache
from pathlib import Path

from torch import nn

from f2n.errors import ConfigError
from f2n.fileio import f2n_home, sha256_file, writable_home, write_text_atomic
from f2n.nets.rrdbnet import ValueRange
from f2n.weights.checkpoint import parse_value_range

# The key under which an exported graph (ONNX metadata_props, AOTInductor package metadata)
# records its network's value range, so that its fp32 twin is built with the same.
VALUE_RANGE_METADATA = "f2n.value_range"


def architecture(model: nn.Module) -> list[tuple[str, list[int]]]:
    """Parameter names and shapes: all a compiled graph depends on (weights are replaced)."""
    return sorted((key, list(value.shape)) for key, value in model.state_dict().items())


def graph_fields(model: nn.Module) -> dict:
    """What a compiled graph of ``model`` (an RRDBNet) depends on besides the weights it is
    given: its architecture and the value range its forward maps in and out."""
    return {"architecture": architecture(model), "value_range": model.value_range}


def recorded_range(metadata: dict[str, str], artifact: object) -> ValueRange:
    """The value range an exported graph's metadata records; a graph without one (written
    before ranges existed) is unit, as every network was then."""
    return parse_value_range(metadata, str(artifact), key=VALUE_RANGE_METADATA)


def digest(fields: dict) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:20]


def cache_dir(kind: str) -> Path:
    """The folder artifacts of ``kind`` are written to: ``$F2N_HOME/engines/<kind>``, or, when
    the home is a read-only folder (a model cache mounted into a container), a temp folder of
    this process's own: nothing is written into the home, and nothing is cached."""
    try:
        return writable_home() / "engines" / kind
    except ConfigError:
        if not f2n_home().is_dir():
            raise  # a home that is a file, or cannot be made: say so
        return _scratch() / kind


def cached_artifact(kind: str, name: str) -> Path:
    """The artifact ``name`` of ``kind``: the home's copy when it has one (read-only or not),
    else where :func:`cache_dir` puts a new one."""
    cached = f2n_home() / "engines" / kind / name
    return cached if cached.is_file() else cache_dir(kind) / name


@cache
def _scratch() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="f2n-engines-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def sidecar_path(artifact: Path) -> Path:
    return artifact.with_name(f"{artifact.stem}.json")


def record_artifact(artifact: Path, fields: dict) -> None:
    """Write the sidecar of an artifact just written (after it: an artifact without a
    valid sidecar is never read)."""
    sidecar = {"key": _as_json(fields), "sha256": sha256_file(artifact)}
    write_text_atomic(sidecar_path(artifact), json.dumps(sidecar, indent=1))


def is_trusted(artifact: Path, fields: dict) -> bool:
    """True when ``artifact`` exists and its sidecar records exactly ``fields`` and
    the SHA-256 of its current bytes."""
    sidecar = sidecar_path(artifact)
    if not (artifact.is_file() and sidecar.is_file()):
        return False
    try:
        recorded = json.loads(sidecar.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(recorded, dict) and recorded.get("key") == _as_json(fields) and recorded.get("sha256") == sha256_file(artifact)


def _as_json(fields: dict) -> dict:
    """Tuples become lists, as they come back from JSON."""
    return json.loads(json.dumps(fields))
