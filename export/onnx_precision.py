"""fp16 and bf16 copies of an fp32 ONNX graph, for TensorRT 11's strongly typed
networks (it has no FP16/BF16 builder flags: a graph computes in its own dtypes).

- fp16: ``onnxconverter-common``'s converter with ``keep_io_types=True``, so the
  graph's input and output stay fp32 (callers and the tiler are unaffected) and Cast
  nodes sit behind the input and before the output. Ops the converter keeps in fp32
  (Resize and its scales) get Casts around them.
- bf16: the fp16 graph retyped to bf16 (initializers, Cast targets, value types),
  each weight rounded once from its fp32 value (not via fp16, whose range is smaller),
  and the opset raised to 22, the first whose Conv admits bf16.

Initializer names are kept, so TensorRT refit names and :mod:`f2n.export.names` work
on the converted graph as on the fp32 one.
"""

import numpy as np
import onnx
import torch
from onnx import TensorProto, numpy_helper

from f2n.errors import ConfigError, EngineUnavailableError

REDUCED_PRECISIONS = ("fp16", "bf16")
BF16_MIN_OPSET = 22  # Conv, LeakyRelu, ... accept bfloat16 from opset 22


def reduced_precision_graph(graph: onnx.ModelProto, precision: str) -> onnx.ModelProto:
    """A copy of the fp32 ``graph`` computing in ``precision``, fp32 input and output."""
    if precision not in REDUCED_PRECISIONS:
        raise ConfigError(f"reduced ONNX precision must be one of {', '.join(REDUCED_PRECISIONS)}, got {precision!r}")
    try:
        from onnxconverter_common import float16
    except ImportError as error:
        raise EngineUnavailableError(
            "an fp16/bf16 TensorRT 11 engine needs an fp16/bf16 ONNX graph, made with onnxconverter-common: "
            "pip install onnxconverter-common (part of f2n[gpu]), or use --precision fp32"
        ) from error
    source = onnx.ModelProto()
    source.CopyFrom(graph)
    # Stale shape annotations (onnxslim writes them) make the converter mistype the
    # tensors around the ops it keeps in fp32; it re-derives what it needs without them.
    del source.graph.value_info[:]
    half = float16.convert_float_to_float16(source, keep_io_types=True)
    return half if precision == "fp16" else _fp16_to_bf16(half, graph)


def _fp16_to_bf16(half: onnx.ModelProto, fp32_graph: onnx.ModelProto) -> onnx.ModelProto:
    originals = {init.name: numpy_helper.to_array(init) for init in fp32_graph.graph.initializer}
    out = onnx.ModelProto()
    out.CopyFrom(half)
    for index, init in enumerate(out.graph.initializer):
        if init.data_type == TensorProto.FLOAT16:
            value = originals.get(init.name)
            if value is None:  # a constant the converter made: no fp32 original to round from
                value = numpy_helper.to_array(init).astype(np.float32)
            out.graph.initializer[index].CopyFrom(bf16_initializer(init.name, value))
    for node in out.graph.node:
        for attribute in node.attribute:
            if node.op_type == "Cast" and attribute.name == "to" and attribute.i == TensorProto.FLOAT16:
                attribute.i = TensorProto.BFLOAT16
            elif attribute.type == onnx.AttributeProto.TENSOR and attribute.t.data_type == TensorProto.FLOAT16:
                attribute.t.CopyFrom(bf16_initializer(attribute.t.name, numpy_helper.to_array(attribute.t).astype(np.float32)))
    for value_info in (*out.graph.input, *out.graph.output, *out.graph.value_info):
        if value_info.type.tensor_type.elem_type == TensorProto.FLOAT16:
            value_info.type.tensor_type.elem_type = TensorProto.BFLOAT16
    for opset in out.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = max(opset.version, BF16_MIN_OPSET)
    return out


def bf16_initializer(name: str, value: np.ndarray) -> TensorProto:
    """``value`` (float32) rounded to nearest-even bfloat16, as an ONNX tensor."""
    bits = torch.tensor(value, dtype=torch.float32).to(torch.bfloat16).view(torch.int16).numpy()
    return onnx.helper.make_tensor(name, TensorProto.BFLOAT16, list(value.shape), bits.tobytes(), raw=True)

