"""TensorRT refit values as plain functions (no TensorRT import).

A refit takes every refittable weight in the dtype of the engine's prototype, which
is the graph's dtype: fp32 for an fp32 graph (also under TensorRT 10's FP16/BF16
flags, which convert at refit), fp16 or bf16 for TensorRT 11's strongly typed plans.
numpy has no bfloat16, so values are torch tensors handed to TensorRT by pointer
(``trt.Weights(dtype, data_ptr, count)``), on the GPU, where the conversion is cheap.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from f2n.errors import WeightsError
from f2n.export.names import WeightNameMap, map_initializers
from f2n.export.onnx_export import graph_value_range, initializer_shapes
from f2n.nets.rrdbnet import ValueRange

# trt.DataType member name -> torch dtype, for refit weights and I/O buffers
TORCH_DTYPES = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16, "INT32": torch.int32, "INT64": torch.int64}


@dataclass(frozen=True)
class RefitSource:
    """What a refit needs from the ONNX graph, read once: the name map, the shape of
    each network weight (to check θ_n; not the values) and the values of the other
    initializers (small constants such as Resize scales); and the network's value range,
    for the fp32 twin."""

    names: WeightNameMap
    shapes: Mapping[str, tuple[int, ...]]
    constants: Mapping[str, np.ndarray]
    value_range: ValueRange


def read_refit_source(graph: Path | onnx.ModelProto, keys: Iterable[str]) -> RefitSource:
    graph = onnx.load(str(graph)) if isinstance(graph, Path) else graph
    names = map_initializers(graph, keys)
    constants = {init.name: _as_float32_if_bf16(init) for init in graph.graph.initializer if init.name not in names.onnx_to_canonical}
    return RefitSource(names, initializer_shapes(graph, names), constants, graph_value_range(graph))


def _as_float32_if_bf16(init: onnx.TensorProto) -> np.ndarray:
    # numpy_helper returns bf16 as raw uint16 bits (numpy has no bf16); widen it exactly.
    if init.data_type == onnx.TensorProto.BFLOAT16:
        bits = np.frombuffer(init.raw_data, dtype=np.uint16).astype(np.uint32) << 16
        return bits.view(np.float32).reshape(tuple(init.dims))
    return numpy_helper.to_array(init)


def torch_dtype(trt_dtype_name: str, what: str) -> torch.dtype:
    """The torch dtype of a ``trt.DataType`` member name."""
    if trt_dtype_name not in TORCH_DTYPES:
        raise WeightsError(f"{what} has TensorRT type {trt_dtype_name}, expected one of {', '.join(TORCH_DTYPES)}")
    return TORCH_DTYPES[trt_dtype_name]


def refit_values(names: WeightNameMap, constants: Mapping[str, np.ndarray], state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Values for every refittable TensorRT weight, by ONNX name: θ_n (checked against
    the graph already) for the network's weights, the exported value for the other
    initializers (``constants``: ones the parser may also mark refittable)."""
    values = {name: torch.from_numpy(np.array(value)) for name, value in constants.items()}
    for key, name in names.canonical_to_onnx.items():
        values[name] = state_dict[key].detach()
    return values


def refit_tensor(name: str, value: torch.Tensor, prototype_count: int, prototype_dtype: str, device: torch.device | str) -> torch.Tensor:
    """``value`` as TensorRT's prototype for ``name`` wants it: same element count
    (TensorRT rejects any other; say which and why before it does), the prototype's
    dtype, contiguous on ``device``; the caller keeps it alive until the refit is done."""
    if value.numel() != prototype_count:
        raise WeightsError(f"refit weight {name}: {value.numel()} values, expected {prototype_count} (engine prototype)")
    dtype = torch_dtype(prototype_dtype, f"refit weight {name}")
    return value.to(device=device, dtype=dtype).contiguous()


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
