"""TensorRT build decisions as plain functions (no TensorRT import), so that they
are tested where TensorRT cannot be installed.

- Profile: the tiler sends (<= batch, 3, <= tile, <= tile) tiles; edge tiles are full
  size unless the photo is smaller than a tile, so the engine is tuned for the full
  tile (opt = max) and accepts anything down to 1 x 1.
- Recipe (:func:`build_recipe`), chosen by what the installed TensorRT offers, never by
  its version number: always REFIT (per-photo weights; never REFIT_IDENTICAL, undefined
  when weights change). fp16/bf16 where ``BuilderFlag`` still has FP16/BF16 (TensorRT
  10): that flag on an fp32 graph. Where it has not (TensorRT 11, always strongly
  typed): an fp16/bf16 graph (:mod:`f2n.export.onnx_precision`), no precision flag.
  TF32 is cleared unless asked for: fp32 then means IEEE fp32, as verified.
- Cache: a plan is stored with a JSON sidecar holding its key fields and its own
  SHA-256 (:mod:`f2n.export.cache`); a plan whose sidecar differs (other GPU, TensorRT,
  precision, TF32, profile or ONNX graph) or whose bytes do not hash to the recorded
  value is rebuilt, not trusted.
"""

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from f2n.errors import ConfigError, EngineUnavailableError
from f2n.export.cache import digest, is_trusted, record_artifact
from f2n.fileio import write_bytes_atomic

TRT_PRECISIONS = ("fp32", "fp16", "bf16")
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


@dataclass(frozen=True)
class TrtRecipe:
    """How to build a plan of one precision with the installed TensorRT."""

    graph_precision: str  # dtype of the ONNX graph handed to the parser
    set_flags: tuple[str, ...]  # trt.BuilderFlag members to set
    clear_flags: tuple[str, ...]  # ... and to clear (TF32 is on by default)
    strongly_typed: bool  # pass NetworkDefinitionCreationFlag.STRONGLY_TYPED (TensorRT 10 has it, 11 always is)


def enum_names(enum_type: object) -> frozenset[str]:
    """Member names of a TensorRT enum (``trt.BuilderFlag``, ...): what this install offers."""
    return frozenset(getattr(enum_type, "__members__", {}))


def build_recipe(precision: str, builder_flags: Iterable[str], network_flags: Iterable[str] = (), *, tf32: bool = False) -> TrtRecipe:
    """The recipe for ``precision`` given the member names of ``trt.BuilderFlag`` and
    ``trt.NetworkDefinitionCreationFlag`` of the installed TensorRT."""
    if precision not in TRT_PRECISIONS:
        raise ConfigError(f"TensorRT precision must be one of {list(TRT_PRECISIONS)}, got {precision!r}")
    builder_flags, network_flags = frozenset(builder_flags), frozenset(network_flags)
    if "REFIT" not in builder_flags:
        raise EngineUnavailableError("this TensorRT has no BuilderFlag.REFIT: f2n refits per-photo weights and needs it (TensorRT >= 10)")
    if tf32 and "TF32" not in builder_flags:
        raise ConfigError("--tf32 asked for, but this TensorRT has no BuilderFlag.TF32")
    tf32_flags = ("TF32",) if "TF32" in builder_flags else ()
    set_flags, clear_flags = ("REFIT", *tf32_flags) if tf32 else ("REFIT",), () if tf32 else tf32_flags
    weak_flag = {"fp16": "FP16", "bf16": "BF16"}.get(precision)
    if weak_flag is None or weak_flag in builder_flags:  # fp32, or TensorRT 10's precision flags
        return TrtRecipe("fp32", (*set_flags, *([weak_flag] if weak_flag else [])), clear_flags, strongly_typed=False)
    return TrtRecipe(precision, set_flags, clear_flags, strongly_typed="STRONGLY_TYPED" in network_flags)


@dataclass(frozen=True)
class TrtCacheKey:
    gpu: str  # device name and compute capability
    tensorrt: str
    precision: str
    profile: TrtProfile
    onnx_sha256: str  # of the fp32 export; the graph parsed follows from it, the precision and TensorRT
    tf32: bool = False

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
