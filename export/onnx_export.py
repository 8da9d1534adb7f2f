"""Export an RRDBNet to ONNX with replaceable, canonically named weights.

Exporter: the TorchScript one (``dynamo=False``). Both exporters name initializers
after the parameters here, but the torch.export one needs onnxscript (not a
dependency) and took ~15x longer on a 1-block net; ``do_constant_folding=False``
keeps every parameter a named initializer. The graph is the network only:
input (N, 3, H, W) RGB in [0, 1], output (N, 3, 4H, 4W), NOT clamped (like the
torch engine; the tiler clamps once after blending, as Real-ESRGAN does after
inference). N, H and W are dynamic. A signed network's range change is in the graph;
its ``metadata_props`` record the range (:func:`graph_value_range`) for the fp32 twin.
"""

import copy
import os
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from f2n.errors import ConfigError, F2NError, WeightsError
from f2n.export.cache import VALUE_RANGE_METADATA, cached_artifact, digest, graph_fields, recorded_range
from f2n.export.names import WeightNameMap, map_initializers
from f2n.nets.rrdbnet import ValueRange
from f2n.onnxruntime_support import import_onnxruntime

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "output"
ONNX_PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16}  # ORT's CPU Conv has no bf16 kernel
SAMPLE_SIZE = 32  # LR pixels of the tracing input; any size works, the axes are dynamic
FP32_TOLERANCE = 1e-4  # max abs difference ONNX Runtime vs PyTorch, fp32
ONNX_FORMAT = 1  # bump when the export recipe changes (invalidates cached graphs)


class VerificationError(F2NError):
    """An exported artifact does not reproduce the PyTorch network within tolerance."""

    exit_code = 6


def export_onnx(model: nn.Module, path: str | Path, *, precision: str = "fp32", simplify: bool = True) -> Path:
    """Write ``model`` as ONNX to ``path`` (atomically) and return the path.
    fp16 stores fp16 weights and fp16 input/output. ``simplify`` runs onnxslim, then
    checks that every weight is still an initializer holding its exact value."""
    if precision not in ONNX_PRECISIONS:
        raise ConfigError(f"ONNX export precision must be one of {sorted(ONNX_PRECISIONS)}, got {precision!r} (bf16: use --format aoti or trt)")
    dtype = ONNX_PRECISIONS[precision]
    net = copy.deepcopy(model).cpu().eval().to(dtype)
    sample = torch.rand(1, 3, SAMPLE_SIZE, SAMPLE_SIZE, dtype=dtype)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with warnings.catch_warnings():
            # The TorchScript exporter is deprecated but chosen on purpose (module docstring).
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export", category=DeprecationWarning)
            torch.onnx.export(
                net,
                (sample,),
                str(tmp),
                dynamo=False,
                opset_version=OPSET,
                do_constant_folding=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={
                    INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                    OUTPUT_NAME: {0: "batch", 2: "height_x4", 3: "width_x4"},
                },
            )
        graph = onnx.load(str(tmp))
        if simplify:
            import onnxslim  # only here: a machine without it can still export with simplify=False

            graph = onnxslim.slim(graph)
        check_weights_kept(graph, net.state_dict())
        onnx.helper.set_model_props(graph, {VALUE_RANGE_METADATA: net.value_range})
        onnx.save(graph, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def check_weights_kept(graph: onnx.ModelProto, state_dict: dict[str, torch.Tensor]) -> WeightNameMap:
    """Every parameter must be an initializer with its exact value (not folded into
    another constant, which would make per-photo replacement miss it)."""
    name_map = map_initializers(graph, state_dict.keys())
    arrays = initializer_arrays(graph)
    changed = [key for key, name in name_map.canonical_to_onnx.items() if not np.array_equal(arrays[name], state_dict[key].numpy())]
    if changed:
        raise WeightsError(f"ONNX initializers {', '.join(changed[:3])} differ from the network's weights, expected identical values")
    return name_map


def initializer_arrays(graph: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {init.name: numpy_helper.to_array(init) for init in graph.graph.initializer}


def graph_value_range(graph: onnx.ModelProto) -> ValueRange:
    """The value range of the network ``graph`` was exported from."""
    return recorded_range({prop.key: prop.value for prop in graph.metadata_props}, "ONNX graph")


def initializer_shapes(graph: onnx.ModelProto, names: WeightNameMap) -> dict[str, tuple[int, ...]]:
    """Canonical key -> shape of its initializer, read from the graph's dims (no weight
    values are decoded or kept)."""
    dims = {init.name: tuple(init.dims) for init in graph.graph.initializer}
    return {key: dims[name] for key, name in names.canonical_to_onnx.items()}


def onnx_input_dtype(graph: onnx.ModelProto) -> np.dtype:
    """The numpy dtype of the graph's image input (float32 or float16)."""
    elem_type = next(i for i in graph.graph.input if i.name == INPUT_NAME).type.tensor_type.elem_type
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type))


def verify_onnx(path: str | Path, model: nn.Module, image: torch.Tensor) -> float:
    """Max abs difference between ONNX Runtime (CPU) on ``path`` and fp32 PyTorch
    ``model`` on ``image`` ((1, 3, h, w) float32 in [0, 1])."""
    session = import_onnxruntime().InferenceSession(str(path), providers=["CPUExecutionProvider"])
    dtype = onnx_input_dtype(onnx.load(str(path), load_external_data=False))
    got = session.run([OUTPUT_NAME], {INPUT_NAME: image.numpy().astype(dtype)})[0].astype(np.float32)
    with torch.inference_mode():
        want = copy.deepcopy(model).cpu().float().eval()(image).numpy()
    return float(np.abs(got - want).max())


def cached_onnx(model: nn.Module, *, precision: str = "fp32") -> Path:
    """The ONNX graph for ``model``'s architecture from ``$F2N_HOME/engines/onnx``,
    exported on a miss. Its embedded weights are whichever set was exported first:
    engines replace them, the graph is what is cached."""
    key = digest({**graph_fields(model), "torch": torch.__version__, "opset": OPSET, "precision": precision, "format": ONNX_FORMAT})
    path = cached_artifact("onnx", f"rrdbnet-{key}.onnx")
    return path if path.is_file() else export_onnx(model, path, precision=precision)
