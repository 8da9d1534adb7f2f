"""OpenVINO engine (CPU) taking a photo's weights without re-exporting.

The plain fp32 ONNX export is read once into an ``ov.Model``; its weights are the
``Constant`` nodes named after the ONNX initializers. Two ways to hand θ_n over
(measured in docs/export.md, "OpenVINO"):

- ``"constants"`` (default): ``set_weights`` swaps every weight Constant of the
  in-memory model for one holding θ_n and compiles the model again (~1 s, no ONNX
  parsing). The CPU plugin then packs the weights for its kernels (in bf16 where
  asked), so tiles run at the full speed of a model compiled with those weights.
- ``"inputs"``: the weight Constants become model Parameters; the model is compiled
  once for every photo and θ_n is fed with each tile. Nothing is compiled per
  photo, but the plugin repacks the weights at every inference (measured 18 %
  slower in bf16 on a 48² tile, ~4 % on a 96² tile).

The model keeps its dynamic (N, H, W) input: one compiled model serves every tile
shape (measured as fast as one compiled for a static shape). Precision is OpenVINO's
``INFERENCE_PRECISION_HINT``: ``bf16`` only where the CPU computes it natively
(:func:`f2n.cpu_features.native_bf16`, the probe every part of f2n shares; OpenVINO would
otherwise fall back silently), ``fp32``
otherwise. A bf16 tile that comes out NaN/Inf is redone by the fp32 twin
(:mod:`f2n.export.fallback`).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnx
import torch

from f2n import cpu_features
from f2n.errors import ConfigError, EngineUnavailableError
from f2n.export.fallback import Fp32Twin
from f2n.export.names import map_initializers
from f2n.export.onnx_export import INPUT_NAME, graph_value_range, initializer_shapes, onnx_input_dtype
from f2n.weights.fit import check_weight_set

REPLACEMENTS = ("constants", "inputs")
DEFAULT_REPLACEMENT = "constants"  # full inference speed; see the module docstring
PRECISIONS = {"fp32": "f32", "bf16": "bf16"}  # f2n name -> INFERENCE_PRECISION_HINT
DEVICE = "CPU"


def import_openvino() -> ModuleType:
    """The ``openvino`` package, or one line saying how to get it."""
    try:
        import openvino
    except ImportError as error:
        raise EngineUnavailableError(
            f"--engine openvino needs the openvino package ({error}); pip install openvino, or use --engine torch"
        ) from None
    return openvino


def check_precision(precision: str, core: Any) -> None:
    if precision not in PRECISIONS:
        raise ConfigError(f"--engine openvino precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "bf16" and not cpu_features.native_bf16():
        raise EngineUnavailableError(
            "--precision bf16 needs a CPU with AVX512-BF16 or AMX, this one has neither "
            f"({core.get_property(DEVICE, 'FULL_DEVICE_NAME')}); use --precision fp32"
        )


@dataclass(frozen=True)
class _Loaded:
    """One photo's weights in the form a run needs; replaced as a whole by set_weights."""

    compiled: Any  # ov.CompiledModel
    feeds: Mapping[str, np.ndarray]  # weights fed with every tile ("inputs"); empty for "constants"


class OpenVinoEngine:
    """:class:`~f2n.runtime.types.SREngine` on OpenVINO's CPU plugin for an fp32 ONNX
    file written by :func:`f2n.export.onnx_export.export_onnx`."""

    name = "openvino"

    def __init__(
        self,
        onnx_path: str | Path,
        weights: Mapping[str, torch.Tensor],
        *,
        precision: str = "fp32",
        replacement: str = DEFAULT_REPLACEMENT,
        threads: int = 0,  # 0: OpenVINO's default (every core it may use)
    ) -> None:
        if replacement not in REPLACEMENTS:
            raise ConfigError(f"OpenVINO weight replacement must be one of {REPLACEMENTS}, got {replacement!r}")
        ov = import_openvino()
        self._ov = ov
        self._core = ov.Core()
        check_precision(precision, self._core)
        self.precision = precision
        self.replacement = replacement
        graph = onnx.load(str(onnx_path))
        if onnx_input_dtype(graph) != np.float32:
            raise ConfigError(f"the OpenVINO engine reads the fp32 ONNX export, {onnx_path} is {onnx_input_dtype(graph)}")
        names = map_initializers(graph, weights.keys())
        self._shapes = initializer_shapes(graph, names)
        self._model = self._core.read_model(str(onnx_path))
        constants = {op.get_friendly_name(): op for op in self._model.get_ops() if op.get_type_name() == "Constant"}
        absent = sorted(set(names.onnx_to_canonical) - constants.keys())
        if absent:
            raise ConfigError(f"OpenVINO read no Constant for {len(absent)} ONNX weights (e.g. {', '.join(absent[:3])})")
        # canonical key -> the node whose consumers take that weight (replaced by set_weights)
        self._nodes = {key: constants[name] for key, name in names.canonical_to_onnx.items()}
        self._onnx_names = dict(names.canonical_to_onnx)
        self._config = {"INFERENCE_PRECISION_HINT": PRECISIONS[precision], "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            self._config["INFERENCE_NUM_THREADS"] = threads
        self._twin = Fp32Twin("cpu", self.name, graph_value_range(graph)) if precision != "fp32" else None
        self._shared = None
        if replacement == "inputs":
            self._weights_as_parameters()
            self._shared = self._compile()  # one compiled model for every photo
        self.set_weights(weights)

    def _compile(self) -> Any:
        return self._core.compile_model(self._model, DEVICE, self._config)

    def _replace(self, key: str, node: Any) -> None:
        """Make every consumer of weight ``key`` read ``node`` instead."""
        node.set_friendly_name(self._onnx_names[key])
        for target in self._nodes[key].output(0).get_target_inputs():
            target.replace_source_output(node.output(0))
        self._nodes[key] = node

    def _weights_as_parameters(self) -> None:
        ov = self._ov
        parameters = []
        for key, shape in self._shapes.items():
            parameter = ov.op.Parameter(ov.Type.f32, ov.PartialShape(list(shape)))
            parameter.output(0).get_tensor().set_names({self._onnx_names[key]})
            self._replace(key, parameter)
            parameters.append(parameter)
        self._model.add_parameters(parameters)
        self._model.validate_nodes_and_infer_types()

    def set_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        check_weight_set(self._shapes, state_dict, what="weights", target="the OpenVINO model")
        # Copies in fp32: OpenVINO may keep pointing at them, the caller may change its tensors.
        arrays = {key: np.array(value.detach().cpu().numpy(), dtype=np.float32) for key, value in state_dict.items()}
        if self.replacement == "inputs":
            self._loaded = _Loaded(self._shared, {self._onnx_names[key]: array for key, array in arrays.items()})
        else:
            for key, array in arrays.items():
                self._replace(key, self._ov.op.Constant(array, shared_memory=False))
            self._loaded = _Loaded(self._compile(), {})
        if self._twin is not None:
            self._twin.follow(state_dict)

    def run(self, tiles: torch.Tensor) -> torch.Tensor:
        loaded = self._loaded  # one consistent weight set even if set_weights runs meanwhile
        request = loaded.compiled.create_infer_request()
        inputs = {INPUT_NAME: np.ascontiguousarray(tiles.numpy(), dtype=np.float32), **loaded.feeds}
        request.infer(inputs, share_inputs=True)
        return torch.from_numpy(request.get_output_tensor(0).data.copy())

    def run_fp32(self, tiles: torch.Tensor) -> torch.Tensor:
        """``run`` in fp32: the engine itself when it computes fp32, else the fp32 twin."""
        return self.run(tiles) if self._twin is None else self._twin.run(tiles)
