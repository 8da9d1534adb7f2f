"""ONNX Runtime engine taking a photo's weights without re-exporting.

Two ways to replace the weights (measured in docs/export.md):
- ``"inputs"``: the weights become graph inputs of one session; ``set_weights``
  turns θ_n into OrtValues once and every ``run`` feeds them with the tiles.
- ``"reinit"``: the weights stay initializers; ``set_weights`` creates a new session
  with ``SessionOptions.add_initializer`` overrides (ORT can then pre-pack them); the
  optimisations that rewrite initializers must be off (``REWRITING_OPTIMIZERS``).

Memory: ``inputs`` keeps θ_n once (the OrtValues; the graph bytes hold no weights);
``reinit`` also keeps the serialized graph with its exported weights, because every
new session is made from it (ORT needs the initializers present to override them).
An fp16 graph (CUDA EP, or ``inputs`` on the CPU EP, which casts around every node)
redoes NaN/Inf tiles through ``run_fp32``, an fp32 twin (:mod:`f2n.export.fallback`).

CPU execution provider by default; ``device="cuda"`` uses the CUDA EP with the
weights resident on the GPU. The TensorRT EP is not used: it would rebuild its engine
for every photo's weights; use the ``trt`` engine (refit) instead.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnx
import torch

from f2n.errors import ConfigError, EngineUnavailableError
from f2n.export.fallback import Fp32Twin
from f2n.export.names import WeightNameMap, map_initializers
from f2n.export.onnx_export import (
    INPUT_NAME,
    OUTPUT_NAME,
    graph_value_range,
    initializer_shapes,
    onnx_input_dtype,
)
from f2n.onnxruntime_support import (
    CUDA_PROVIDER,
    check_providers,
    import_onnxruntime,
    ort_out_of_memory,
    preload_cuda_libraries,
)
from f2n.weights.fit import check_weight_set

REPLACEMENTS = ("reinit", "inputs")
# ConvMulFusion folds the dense blocks' x0.2 into conv5; NchwcTransformer re-packs every conv weight.
REWRITING_OPTIMIZERS = ("ConvMulFusion", "NchwcTransformer")
DEFAULT_REPLACEMENT = "inputs"  # faster set_weights + one tile here (docs/export.md)


@dataclass(frozen=True)
class _Loaded:
    """One photo's weights in the form a run needs; replaced as a whole by set_weights."""

    session: Any  # onnxruntime.InferenceSession (onnxruntime is imported when an engine is made)
    weights: Mapping[str, Any]  # OrtValues, fed per run ("inputs"); kept alive for the session ("reinit")


def providers_for(ort: ModuleType, device: str) -> list[str]:
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda":
        preload_cuda_libraries(ort)
        available = ort.get_available_providers()
        if CUDA_PROVIDER not in available:
            raise EngineUnavailableError(
                f"--engine onnx --device cuda needs onnxruntime-gpu (CUDA EP), available here: {', '.join(available)}; "
                "use --device cpu or --engine torch"
            )
        return [CUDA_PROVIDER, "CPUExecutionProvider"]
    raise ConfigError(f"ONNX Runtime device must be cpu or cuda, got {device!r}")


class OrtEngine:
    """:class:`~f2n.runtime.types.SREngine` on ONNX Runtime for an ONNX file written
    by :func:`f2n.export.onnx_export.export_onnx` (canonically named initializers)."""

    name = "onnx"

    def __init__(
        self,
        onnx_path: str | Path,
        weights: Mapping[str, torch.Tensor],
        *,
        device: str = "cpu",
        replacement: str = DEFAULT_REPLACEMENT,
        threads: int = 0,  # 0: ONNX Runtime's default (one per physical core)
    ) -> None:
        if replacement not in REPLACEMENTS:
            raise ConfigError(f"ONNX weight replacement must be one of {REPLACEMENTS}, got {replacement!r}")
        self.device = device
        self.replacement = replacement
        self._ort = import_onnxruntime()
        self._providers = providers_for(self._ort, device)
        self._threads = threads
        graph = onnx.load(str(onnx_path))
        self.names: WeightNameMap = map_initializers(graph, weights.keys())
        self.dtype = onnx_input_dtype(graph)
        if self.dtype != np.float32 and device == "cpu" and replacement == "reinit":
            # ORT's CPU EP computes fp16 graphs through inserted Casts, which also swallow
            # add_initializer overrides; weights fed as inputs go through them.
            raise ConfigError(f"ONNX weight replacement 'reinit' on the CPU needs an fp32 ONNX graph, got {self.dtype}; use replacement 'inputs'")
        self._twin = Fp32Twin(device, self.name, graph_value_range(graph)) if self.dtype != np.float32 else None
        self._shapes = initializer_shapes(graph, self.names)
        if replacement == "inputs":
            graph = _weights_as_inputs(graph, set(self.names.onnx_to_canonical))
        self._model_bytes = graph.SerializeToString()
        self._base = self._session({}) if replacement == "inputs" else None  # one session for every weight set
        self.set_weights(weights)

    def _session(self, overrides: Mapping[str, Any]) -> Any:
        options = self._ort.SessionOptions()
        options.intra_op_num_threads = self._threads
        for name, value in overrides.items():
            options.add_initializer(name, value)
        # These passes rewrite initializers before the overrides apply, so add_initializer
        # would be silently ignored for the weights they touch (measured, ORT 1.32).
        disabled = list(REWRITING_OPTIMIZERS) if self.replacement == "reinit" else []
        session = self._ort.InferenceSession(self._model_bytes, options, providers=self._providers, disabled_optimizers=disabled)
        check_providers(self._providers, session.get_providers())
        return session

    def _ortvalue(self, array: np.ndarray) -> Any:
        return self._ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array, dtype=self.dtype), self.device, 0)

    def _load(self, weights: Mapping[str, np.ndarray]) -> _Loaded:
        values = {self.names.canonical_to_onnx[key]: self._ortvalue(array) for key, array in weights.items()}
        if self.replacement == "inputs":
            return _Loaded(self._base, values)
        # add_initializer does not copy: the OrtValues must live as long as the session.
        return _Loaded(self._session(values), values)

    def set_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        check_weight_set(self._shapes, state_dict, what="weights", target="the ONNX graph")
        # A copy in the engine's dtype: ORT keeps pointing at it, the caller may change its tensors.
        arrays = {key: np.array(value.detach().cpu().numpy(), dtype=self.dtype) for key, value in state_dict.items()}
        self._loaded = self._load(arrays)
        if self._twin is not None:
            self._twin.follow(state_dict)

    def run(self, tiles: torch.Tensor) -> torch.Tensor:
        try:
            return self._run(tiles)
        except Exception as error:
            if ort_out_of_memory(error):  # the tiler halves the tile on this type, as for torch
                raise torch.OutOfMemoryError(f"ONNX Runtime: {str(error).splitlines()[0]}") from error
            raise

    def _run(self, tiles: torch.Tensor) -> torch.Tensor:
        loaded = self._loaded  # one consistent weight set even if set_weights runs meanwhile
        # IO binding: on CUDA the weights stay on the GPU and only tiles travel.
        binding = loaded.session.io_binding()
        if self.replacement == "inputs":
            for name, value in loaded.weights.items():
                binding.bind_ortvalue_input(name, value)
        binding.bind_ortvalue_input(INPUT_NAME, self._ortvalue(tiles.numpy()))
        binding.bind_output(OUTPUT_NAME, "cpu")
        loaded.session.run_with_iobinding(binding)
        out = binding.copy_outputs_to_cpu()[0]
        return torch.from_numpy(out.astype(np.float32, copy=False))

    def run_fp32(self, tiles: torch.Tensor) -> torch.Tensor:
        """``run`` for an fp32 graph; for an fp16 graph, the fp32 twin (:mod:`f2n.export.fallback`)."""
        return self.run(tiles) if self._twin is None else self._twin.run(tiles)


def _weights_as_inputs(graph: onnx.ModelProto, names: set[str]) -> onnx.ModelProto:
    """A copy of ``graph`` whose initializers ``names`` are required graph inputs."""
    out = onnx.ModelProto()
    out.CopyFrom(graph)
    kept = [init for init in out.graph.initializer if init.name not in names]
    moved = [init for init in out.graph.initializer if init.name in names]
    del out.graph.initializer[:]
    out.graph.initializer.extend(kept)
    existing = {i.name for i in out.graph.input}
    out.graph.input.extend(
        onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)) for init in moved if init.name not in existing
    )
    return out
