"""TensorRT engine: a refittable plan built from the ONNX graph, refitted with each
photo's weights; TensorRT 10 and 11 Python APIs, told apart by what they offer.
Decisions (profile, recipe, cache key, refit values, reading TensorRT's reports) live
in :mod:`f2n.export.trt_config`, :mod:`f2n.export.trt_refit` and
:mod:`f2n.export.trt_checks`; this module only talks to TensorRT, which is imported
when an engine is made, never at import time.

One ``trt.ILogger`` serves the whole process (TensorRT warns when several are used);
it keeps the recent error lines, the only place TensorRT says why a plan did not load
or a run failed. Every engine runs on its own CUDA stream: ``execute_async_v3`` on the
legacy default stream synchronises and warns.
"""

import json
import logging
from collections import deque
from collections.abc import Mapping
from functools import cache
from pathlib import Path

import onnx
import torch

from f2n.errors import ConfigError, EngineUnavailableError, WeightsError
from f2n.export.fallback import Fp32Twin
from f2n.export.onnx_export import INPUT_NAME, OUTPUT_NAME
from f2n.export.onnx_precision import reduced_precision_graph
from f2n.export.trt_checks import check_engine_precision, deserialisation_failure, trt_out_of_memory
from f2n.export.trt_config import (
    TrtCacheKey,
    TrtProfile,
    TrtRecipe,
    build_recipe,
    enum_names,
    read_plan,
    write_plan,
)
from f2n.export.trt_refit import RefitSource, read_refit_source, refit_names, refit_tensor, refit_values, torch_dtype
from f2n.fileio import sha256_file
from f2n.weights.fit import check_weight_set

log = logging.getLogger(__name__)
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


@cache
def process_logger(trt):
    """The process's one TensorRT logger: warnings go to :mod:`logging`, errors are
    also kept (``take_errors``) for the messages of :mod:`f2n.export.trt_checks`."""

    class RecordingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: deque[str] = deque(maxlen=32)

        def log(self, severity, msg: str) -> None:
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                self.errors.append(msg)
                log.error("TensorRT: %s", msg)
            elif severity == trt.ILogger.Severity.WARNING:
                log.warning("TensorRT: %s", msg)

        def take_errors(self) -> list[str]:
            errors = list(self.errors)
            self.errors.clear()
            return errors

    return RecordingLogger()


def gpu_name() -> str:
    major, minor = torch.cuda.get_device_capability()
    return f"{torch.cuda.get_device_name()} sm{major}{minor}"


def recipe_for(trt, precision: str, *, tf32: bool = False) -> TrtRecipe:
    return build_recipe(precision, enum_names(trt.BuilderFlag), enum_names(trt.NetworkDefinitionCreationFlag), tf32=tf32)


def parser_graph(onnx_path: Path, recipe: TrtRecipe) -> bytes:
    """The ONNX bytes TensorRT parses: the fp32 export, or its fp16/bf16 copy (TensorRT 11)."""
    if recipe.graph_precision == "fp32":
        return onnx_path.read_bytes()
    return reduced_precision_graph(onnx.load(str(onnx_path)), recipe.graph_precision).SerializeToString()


def build_plan(trt, graph: bytes, recipe: TrtRecipe, profile: TrtProfile) -> bytes:
    logger = process_logger(trt)
    logger.take_errors()
    builder = trt.Builder(logger)
    network_flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if recipe.strongly_typed else 0
    network = builder.create_network(network_flags)  # explicit batch is the only mode since TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(graph):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise WeightsError(f"TensorRT could not parse the ONNX graph: {errors}")
    config = builder.create_builder_config()
    for flag in recipe.set_flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    for flag in recipe.clear_flags:
        config.clear_flag(getattr(trt.BuilderFlag, flag))
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # layer precisions for check_engine_precision
    shapes = builder.create_optimization_profile()
    shapes.set_shape(INPUT_NAME, profile.min, profile.opt, profile.max)
    config.add_optimization_profile(shapes)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        errors = logger.take_errors()
        raise EngineUnavailableError(f"TensorRT failed to build an engine ({recipe}, profile {profile}): {errors[0] if errors else 'no reason logged'}")
    return bytes(plan)


class TrtEngine:
    """:class:`~f2n.runtime.types.SREngine` on a refittable TensorRT plan built by
    :func:`build_plan` from a graph of :func:`f2n.export.onnx_export.export_onnx`."""

    name = "trt"

    def __init__(self, plan: bytes, source: RefitSource, weights: Mapping[str, torch.Tensor], *, precision: str, profile: TrtProfile) -> None:
        trt = import_tensorrt()
        self._trt = trt
        self._source = source
        self.profile = profile
        self._logger = process_logger(trt)
        self._logger.take_errors()
        self._runtime = trt.Runtime(self._logger)  # kept: it must outlive the engines it made
        self._engine = self._runtime.deserialize_cuda_engine(plan)
        if self._engine is None:
            raise EngineUnavailableError(deserialisation_failure(len(plan), self._logger.take_errors()))
        if not self._engine.refittable:
            raise EngineUnavailableError("the TensorRT plan is not refittable: build it with BuilderFlag.REFIT (build_plan does)")
        inspector = self._engine.create_engine_inspector()
        check_engine_precision(json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON)), precision)
        self._input_dtype = torch_dtype(self._engine.get_tensor_dtype(INPUT_NAME).name, f"engine input {INPUT_NAME}")
        self._output_dtype = torch_dtype(self._engine.get_tensor_dtype(OUTPUT_NAME).name, f"engine output {OUTPUT_NAME}")
        self._stream = torch.cuda.Stream()
        self._context = self._engine.create_execution_context()
        self._refitter = trt.Refitter(self._engine, self._logger)
        self._refitter.max_threads = REFIT_THREADS
        self._twin = Fp32Twin("cuda", self.name, source.value_range) if precision != "fp32" else None
        self.set_weights(weights)

    def set_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        trt = self._trt
        check_weight_set(self._source.shapes, state_dict, what="weights", target="the TensorRT engine")
        values = refit_values(self._source.names, self._source.constants, state_dict)
        keep_alive = []  # trt.Weights point into these tensors until the refit completes
        with torch.cuda.stream(self._stream):
            for name in refit_names(self._refitter.get_all_weights(), self._source.names, values):
                prototype = self._refitter.get_weights_prototype(name)
                tensor = refit_tensor(name, values[name], prototype.size, prototype.dtype.name, "cuda")
                keep_alive.append(tensor)
                weights = trt.Weights(prototype.dtype, tensor.data_ptr(), tensor.numel())
                if not self._refitter.set_named_weights(name, weights, trt.TensorLocation.DEVICE):
                    raise WeightsError(f"TensorRT rejected refit weight {name} ({tuple(values[name].shape)}, {prototype.dtype.name})")
        self._stream.synchronize()  # the device copies above are done before TensorRT reads them
        missing = self._refitter.get_missing_weights()
        if missing:
            raise WeightsError(f"TensorRT refit is missing {len(missing)} weights (e.g. {', '.join(missing[:3])})")
        if not self._refitter.refit_cuda_engine():
            raise WeightsError(f"TensorRT refit_cuda_engine failed: {'; '.join(self._logger.take_errors()[:2]) or 'no reason logged'}")
        if self._twin is not None:
            self._twin.follow(state_dict)

    def run_fp32(self, tiles: torch.Tensor) -> torch.Tensor:
        """``run`` for an fp32 plan; for fp16/bf16, the fp32 twin (:mod:`f2n.export.fallback`)."""
        return self.run(tiles) if self._twin is None else self._twin.run(tiles)

    def run(self, tiles: torch.Tensor) -> torch.Tensor:
        if not self.profile.contains(tuple(tiles.shape)):
            raise ConfigError(f"tiles {tuple(tiles.shape)} are outside the TensorRT profile {self.profile.min}..{self.profile.max}")
        with torch.cuda.stream(self._stream):
            batch = tiles.to("cuda", self._input_dtype).contiguous()
            n, _, h, w = batch.shape
            out = torch.empty((n, 3, 4 * h, 4 * w), device="cuda", dtype=self._output_dtype)
            if not self._context.set_input_shape(INPUT_NAME, tuple(batch.shape)):
                raise ConfigError(f"TensorRT refused input shape {tuple(batch.shape)}")
            self._context.set_tensor_address(INPUT_NAME, batch.data_ptr())
            self._context.set_tensor_address(OUTPUT_NAME, out.data_ptr())
            self._logger.take_errors()
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                errors = self._logger.take_errors()
                if trt_out_of_memory(errors):  # the tiler halves the tile on this type, as for torch
                    raise torch.OutOfMemoryError(f"TensorRT: {errors[0]}")
                raise EngineUnavailableError(f"TensorRT execute_async_v3 failed: {errors[0] if errors else 'no reason logged'}")
            result = out.float().cpu()  # waits for the stream
        return result


def load_trt_engine(onnx_path: Path, weights: Mapping[str, torch.Tensor], *, precision: str, profile: TrtProfile, cache_dir: Path, tf32: bool = False) -> TrtEngine:
    """The engine for ``onnx_path`` (the fp32 graph) from the plan cache, built on a miss."""
    trt = import_tensorrt()
    recipe = recipe_for(trt, precision, tf32=tf32)
    key = TrtCacheKey(gpu_name(), trt.__version__, precision, profile, sha256_file(onnx_path), tf32)
    plan = read_plan(cache_dir, key)
    if plan is None:
        plan = build_plan(trt, parser_graph(onnx_path, recipe), recipe, profile)
        write_plan(cache_dir, key, plan)
    return TrtEngine(plan, read_refit_source(onnx_path, weights.keys()), weights, precision=precision, profile=profile)
