"""Keys and files of the compiled-artifact cache under ``$F2N_HOME`` (ONNX graphs,
AOTInductor packages, TensorRT plans). A key is a hash of everything the artifact
depends on, so a stale or foreign file is never picked up by name alone."""

import hashlib
import json
from pathlib import Path

from torch import nn

from f2n.fileio import f2n_home


def architecture(model: nn.Module) -> list[tuple[str, list[int]]]:
    """Parameter names and shapes: all a compiled graph depends on (weights are replaced)."""
    return sorted((key, list(value.shape)) for key, value in model.state_dict().items())


def digest(fields: dict) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:20]


def cache_dir(kind: str) -> Path:
    return f2n_home() / "engines" / kind
