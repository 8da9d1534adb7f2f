"""TensorRT build and refit decisions as plain functions (no TensorRT import), so
that they are tested where TensorRT cannot be installed.

- Profile: the tiler sends (<= batch, 3, <= tile, <= tile) tiles; edge tiles are full
  size unless the photo is smaller than a tile, so the engine is tuned for the full
  tile (opt = max) and accepts anything down to 1 x 1.
- Flags: always REFIT (per-photo weights; never REFIT_IDENTICAL, undefined when weights
  change), plus FP16 or BF16. The ONNX graph stays fp32: TensorRT converts weights at
  build and at every refit, so θ_n is passed in fp32 whatever the precision.
- Cache: a plan is stored with a JSON sidecar holding its key fields and its own
  SHA-256; a plan whose sidecar differs (other GPU, TensorRT, precision, profile or
  ONNX) or whose bytes do not hash to the recorded value is rebuilt, not trusted.
"""

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from f2n.errors import ConfigError, WeightsError
from f2n.export.cache import digest
from f2n.fileio import write_bytes_atomic
from f2n.export.names import WeightNameMap

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
    """Store the plan, then its sidecar (a plan without a valid sidecar is never read)."""
    path = write_bytes_atomic(cache_dir / f"{key.file_stem()}.plan", plan)
    sidecar = {"key": key.fields(), "plan_sha256": hashlib.sha256(plan).hexdigest()}
    write_bytes_atomic(cache_dir / f"{key.file_stem()}.json", json.dumps(sidecar, indent=1).encode())
    return path


def read_plan(cache_dir: Path, key: TrtCacheKey) -> bytes | None:
    """The cached plan for ``key``, or None when absent, stale, foreign or damaged."""
    plan_path, sidecar_path = cache_dir / f"{key.file_stem()}.plan", cache_dir / f"{key.file_stem()}.json"
    if not (plan_path.is_file() and sidecar_path.is_file()):
        return None
    try:
        sidecar = json.loads(sidecar_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    plan = plan_path.read_bytes()
    if sidecar.get("key") != key.fields() or sidecar.get("plan_sha256") != hashlib.sha256(plan).hexdigest():
        return None
    return plan


def refit_arrays(
    names: WeightNameMap, initializers: Mapping[str, np.ndarray], state_dict: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Values for every refittable TensorRT weight, by ONNX name: θ_n for the network's
    weights, the exported value for any other initializer (constants the parser may also
    mark refittable). fp32 and C-contiguous, as trt.Weights reads the raw buffer."""
    missing = sorted(names.canonical_to_onnx.keys() - state_dict.keys())
    if missing:
        raise WeightsError(f"refit weights lack {len(missing)} network weights (e.g. {', '.join(missing[:3])})")
    arrays = {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in initializers.items() if name not in names.onnx_to_canonical}
    for key, name in names.canonical_to_onnx.items():
        value = np.ascontiguousarray(state_dict[key], dtype=np.float32)
        if value.shape != initializers[name].shape:
            raise WeightsError(f"weight {key} has shape {value.shape}, expected {initializers[name].shape}")
        arrays[name] = value
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
