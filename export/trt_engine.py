"""TensorRT engine: a refittable plan built from the ONNX graph, refitted with each
photo's weights (TensorRT 10 Python API). Decisions (profile, flags, cache key, refit
values) live in :mod:`f2n.export.trt_config`; this module only talks to TensorRT.
TensorRT is imported when an engine is made, never at import time."""

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from f2n.errors import ConfigError, EngineUnavailableError, WeightsError
from f2n.export.fallback import Fp32Twin
from f2n.export.onnx_export import INPUT_NAME, OUTPUT_NAME
from f2n.export.trt_config import (
    RefitSource,
    TrtCacheKey,
    TrtProfile,
    builder_flag_names,
    check_prototype,
    read_plan,
    read_refit_source,
    refit_arrays,
    refit_names,
    write_plan,
)
from f2n.fileio import sha256_file
from f2n.weights.fit import check_weight_set

REFIT_THREADS = 4  # TensorRT refits weights in parallel when allowed to (default 1)
UNAVAILABLE = "TensorRT cannot be imported here (pip install tensorrt on a CUDA machine); use the onnx engine instead (--engine onnx, --format onnx)"


def import_tensorrt():
    try:
        import tensorrt
    except ImportError as error:
        raise EngineUnavailableError(UNAVAILABLE) from error
    if not torch.cuda.is_available():
        raise EngineUnavailableError("TensorRT needs a CUDA GPU, none is visible here; use the onnx engine instead (--engine onnx, --format onnx)")
    return tensorrt


def gpu_name() -> str:
    major, minor = torch.cuda.get_device_capability()
    return f"{torch.cuda.get_device_name()} sm{major}{minor}"


def build_plan(trt, onnx_path: Path, precision: str, profile: TrtProfile) -> bytes:
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise WeightsError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    for flag in builder_flag_names(precision):
        config.set_flag(getattr(trt.BuilderFlag, flag))
    shapes = builder.create_optimization_profile()
    shapes.set_shape(INPUT_NAME, profile.min, profile.opt, profile.max)
    config.add_optimization_profile(shapes)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineUnavailableError(f"TensorRT failed to build an engine from {onnx_path} ({precision}, profile {profile})")
    return bytes(plan)


class TrtEngine:
    """:class:`~f2n.runtime.types.SREngine` on a refittable TensorRT plan built by
    :func:`build_plan` from an fp32 graph of :func:`f2n.export.onnx_export.export_onnx`."""

    name = "trt"

    def __init__(self, plan: bytes, source: RefitSource, weights: Mapping[str, torch.Tensor], *, precision: str, profile: TrtProfile) -> None:
        trt = import_tensorrt()
        self._trt = trt
        self._source = source
        self.profile = profile
        logger = trt.Logger(trt.Logger.WARNING)
        self._engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
        if self._engine is None or not self._engine.refittable:
            raise EngineUnavailableError("the TensorRT plan is not a refittable engine: build it with BuilderFlag.REFIT (build_plan does)")
        self._context = self._engine.create_execution_context()
        self._refitter = trt.Refitter(self._engine, logger)
        self._refitter.max_threads = REFIT_THREADS
        self._twin = Fp32Twin("cuda", self.name) if precision != "fp32" else None
        self.set_weights(weights)

    def set_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        trt = self._trt
        check_weight_set(self._source.shapes, state_dict, what="weights", target="the TensorRT engine")
        arrays = refit_arrays(self._source.names, self._source.constants, {k: v.detach().float().cpu().numpy() for k, v in state_dict.items()})
        keep_alive = []  # trt.Weights point into these buffers until the refit completes
        for name in refit_names(self._refitter.get_all_weights(), self._source.names, arrays):
            prototype = self._refitter.get_weights_prototype(name)
            check_prototype(name, arrays[name], prototype.size, np.dtype(trt.nptype(prototype.dtype)).name)
            weights = trt.Weights(arrays[name])
            keep_alive.append(weights)
            if not self._refitter.set_named_weights(name, weights):
                raise WeightsError(f"TensorRT rejected refit weight {name} ({arrays[name].shape})")
        missing = self._refitter.get_missing_weights()
        if missing:
            raise WeightsError(f"TensorRT refit is missing {len(missing)} weights (e.g. {', '.join(missing[:3])})")
        if not self._refitter.refit_cuda_engine():
            raise WeightsError("TensorRT refit_cuda_engine failed (see the TensorRT log above)")
        if self._twin is not None:
            self._twin.follow(state_dict)

    def run_fp32(self, tiles: torch.Tensor) -> torch.Tensor:
        """``run`` for an fp32 plan; for fp16/bf16, the fp32 twin (:mod:`f2n.export.fallback`)."""
        return self.run(tiles) if self._twin is None else self._twin.run(tiles)

    def run(self, tiles: torch.Tensor) -> torch.Tensor:
        if not self.profile.contains(tuple(tiles.shape)):
            raise ConfigError(f"tiles {tuple(tiles.shape)} are outside the TensorRT profile {self.profile.min}..{self.profile.max}")
        batch = tiles.to("cuda", torch.float32).contiguous()
        n, _, h, w = batch.shape
        out = torch.empty((n, 3, 4 * h, 4 * w), device="cuda", dtype=torch.float32)
        stream = torch.cuda.current_stream()
        if not self._context.set_input_shape(INPUT_NAME, tuple(batch.shape)):
            raise ConfigError(f"TensorRT refused input shape {tuple(batch.shape)}")
        self._context.set_tensor_address(INPUT_NAME, batch.data_ptr())
        self._context.set_tensor_address(OUTPUT_NAME, out.data_ptr())
        if not self._context.execute_async_v3(stream.cuda_stream):
            raise EngineUnavailableError("TensorRT execute_async_v3 failed (see the TensorRT log above)")
        stream.synchronize()
        return out.cpu()


def load_trt_engine(onnx_path: Path, weights: Mapping[str, torch.Tensor], *, precision: str, profile: TrtProfile, cache_dir: Path) -> TrtEngine:
    """The engine for ``onnx_path`` (fp32 graph) from the plan cache, built on a miss."""
    trt = import_tensorrt()
    key = TrtCacheKey(gpu_name(), trt.__version__, precision, profile, sha256_file(onnx_path))
    plan = read_plan(cache_dir, key)
    if plan is None:
        plan = build_plan(trt, onnx_path, precision, profile)
        write_plan(cache_dir, key, plan)
    return TrtEngine(plan, read_refit_source(onnx_path, weights.keys()), weights, precision=precision, profile=profile)
