"""TensorRT build and refit decisions as plain functions (no TensorRT import), so
that they are tested where TensorRT cannot be installed.

- Profile: the tiler sends (<= batch, 3, <= tile, <= tile) tiles; edge tiles are full
  size unless the photo is smaller than a tile, so the engine is tuned for the full
  tile (opt = max) and accepts anything down to 1 x 1.
- Flags: always REFIT (per-photo weights; never REFIT_IDENTICAL, undefined when weights
  change), plus FP16 or BF16. The ONNX graph stays fp32: TensorRT converts weights at
  build and at every refit, so θ_n is passed in fp32 whatever the precision.
- Cache: a plan is stored with a JSON sidecar holding its key fields and its own
  SHA-256 (:mod:`f2n.export.cache`); a plan whose sidecar differs (other GPU, TensorRT,
  precision, profile or ONNX) or whose bytes do not hash to the recorded value is
  rebuilt, not trusted.
"""

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from f2n.errors import ConfigError, WeightsError
from f2n.export.cache import digest, is_trusted, record_artifact
from f2n.export.names import WeightNameMap, map_initializers
from f2n.export.onnx_export import initializer_shapes
from f2n.fileio import write_bytes_atomic

TRT_PRECISIONS = {"fp32": (), "fp16": ("FP16",), "bf16": ("BF16",)}
Shape = tuple[int, int, int, int]


@dataclass(frozen=True)
class TrtProfile:
    """One optimization profile for the image input (N, 3, H, W)."""

    min: Shape
    opt: Shape
    max: Shape

    def contains(self, shape: tuple[int, ...]) -> bool:
        return len(shape) == 4 and all(lo <= s <= hi for lo, s, hi in zip(self.min, shape, self.max))


def tile_profile(tile: int, batch_size: int = 1) -> TrtProfile:
    if tile < 1 or batch_size < 1:
        raise ConfigError(f"TensorRT profile needs tile >= 1 and batch >= 1, got tile {tile}, batch {batch_size}")
    full = (batch_size, 3, tile, tile)
    return TrtProfile(min=(1, 3, 1, 1), opt=full, max=full)


def builder_flag_names(precision: str) -> tuple[str, ...]:
    """Names of ``trt.BuilderFlag`` members to set."""
    if precision not in TRT_PRECISIONS:
        raise ConfigError(f"TensorRT precision must be one of {sorted(TRT_PRECISIONS)}, got {precision!r}")
    return ("REFIT", *TRT_PRECISIONS[precision])


@dataclass(frozen=True)
class TrtCacheKey:
    gpu: str  # device name and compute capability
    tensorrt: str
    precision: str
    profile: TrtProfile
    onnx_sha256: str

    def fields(self) -> dict:
        return json.loads(json.dumps(asdict(self)))  # tuples -> lists, as read back from JSON

    def file_stem(self) -> str:
        return f"rrdbnet-{digest(self.fields())}"


def write_plan(cache_dir: Path, key: TrtCacheKey, plan: bytes) -> Path:
    """Store the plan, then its sidecar (:func:`f2n.export.cache.record_artifact`)."""
    path = write_bytes_atomic(cache_dir / f"{key.file_stem()}.plan", plan)
    record_artifact(path, key.fields())
    return path


def read_plan(cache_dir: Path, key: TrtCacheKey) -> bytes | None:
    """The cached plan for ``key``, or None when absent, stale, foreign or damaged."""
    path = cache_dir / f"{key.file_stem()}.plan"
    return path.read_bytes() if is_trusted(path, key.fields()) else None


@dataclass(frozen=True)
class RefitSource:
    """What a refit needs from the ONNX graph, read once: the name map, the shape of
    each network weight (to check θ_n; not the values) and the values of the other
    initializers (small constants such as Resize scales)."""

    names: WeightNameMap
    shapes: Mapping[str, tuple[int, ...]]
    constants: Mapping[str, np.ndarray]


def read_refit_source(onnx_path: Path, keys: Iterable[str]) -> RefitSource:
    graph = onnx.load(str(onnx_path))
    names = map_initializers(graph, keys)
    constants = {init.name: numpy_helper.to_array(init) for init in graph.graph.initializer if init.name not in names.onnx_to_canonical}
    return RefitSource(names, initializer_shapes(graph, names), constants)


def refit_arrays(names: WeightNameMap, constants: Mapping[str, np.ndarray], state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Values for every refittable TensorRT weight, by ONNX name: θ_n (checked against
    the graph already) for the network's weights, the exported value for the other
    initializers (``constants``: ones the parser may also mark refittable). fp32 and
    C-contiguous, as trt.Weights reads the raw buffer."""
    arrays = {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in constants.items()}
    for key, name in names.canonical_to_onnx.items():
        arrays[name] = np.ascontiguousarray(state_dict[key], dtype=np.float32)
    return arrays


def refit_names(refittable: Iterable[str], names: WeightNameMap, available: Iterable[str]) -> list[str]:
    """Which of the engine's refittable weights to set: those we have values for.
    Every network weight must be refittable (else it would silently keep its build-time
    value); parser-made weights we have no value for (``tmp_weight_N``) are left to
    ``get_missing_weights``, which names them if TensorRT needs them."""
    refittable = set(refittable)
    frozen = sorted(names.onnx_to_canonical.keys() - refittable)
    if frozen:
        raise WeightsError(
            f"{len(frozen)} network weights are not refittable in the TensorRT engine (e.g. {', '.join(frozen[:3])}); "
            "expected all: the plan must be built with BuilderFlag.REFIT"
        )
    return sorted(refittable & set(available))


def check_prototype(name: str, array: np.ndarray, prototype_count: int, prototype_dtype: str) -> None:
    """TensorRT rejects a weight whose element count or type differs from
    ``Refitter.get_weights_prototype``; say which and why before it does."""
    if array.size != prototype_count or array.dtype != np.dtype(prototype_dtype):
        raise WeightsError(
            f"refit weight {name}: {array.size} x {array.dtype}, expected {prototype_count} x {np.dtype(prototype_dtype)} (engine prototype)"
        )
