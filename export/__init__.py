"""Export of the x4 SR network (ONNX, AOTInductor, TensorRT) and the engines that run
it with per-photo weights. ``make_engine`` is what the runtime calls."""

from f2n.export.aoti import AotiEngine, compile_package, load_aoti_engine
from f2n.export.engines import ENGINES, make_engine
from f2n.export.names import WeightNameMap, map_initializers
from f2n.export.onnx_export import (
    VerificationError,
    cached_onnx,
    export_onnx,
    verify_onnx,
)
from f2n.export.openvino_engine import OpenVinoEngine
from f2n.export.ort_engine import OrtEngine

__all__ = [
    "ENGINES",
    "AotiEngine",
    "OpenVinoEngine",
    "OrtEngine",
    "VerificationError",
    "WeightNameMap",
    "cached_onnx",
    "compile_package",
    "export_onnx",
    "load_aoti_engine",
    "make_engine",
    "map_initializers",
    "verify_onnx",
]
