"""A face restorer exported to ONNX, run by ONNX Runtime.

Its input size comes from the graph's input shape (1x3xSxS or Nx3xSxS; a dynamic side
takes 512). Value range and colour order come from the model's metadata
(``value_range`` = "-1,1" or "0,1", ``colour_order`` = RGB or BGR) when it has them;
without them the convention of the GPEN-BFR and GFPGAN ONNX exports in circulation
(FaceFusion, ReActor) applies: RGB in [-1, 1], the face as the first output.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from f2n.errors import WeightsError
from f2n.onnxruntime_support import import_onnxruntime
from f2n.runtime.face.restore import from_prior_output, to_prior_input

DEFAULT_SIZE = 512
DEFAULT_RANGE = (-1.0, 1.0)


class OnnxFacePrior:
    def __init__(self, path: Path, *, provenance: Mapping[str, str], device: str | torch.device = "cpu",
                 batch_size: int = 4) -> None:
        ort = import_onnxruntime()  # f2n[cpu] or f2n[gpu]: one line when neither is installed
        from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if torch.device(device).type == "cuda" \
            else ["CPUExecutionProvider"]
        providers = [name for name in providers if name in ort.get_available_providers()]
        try:
            self.session = ort.InferenceSession(str(path), providers=providers)
        except (ort_errors.Fail, ort_errors.InvalidProtobuf, ort_errors.InvalidGraph, ort_errors.InvalidArgument,
                ort_errors.NoSuchFile, ort_errors.NotImplemented, ort_errors.RuntimeException) as error:
            first = next(iter(str(error).strip().splitlines()), type(error).__name__)[:200]
            raise WeightsError(f"cannot load {path} as an ONNX face restorer: {first}") from None
        graph_input = self.session.get_inputs()[0]
        self.input_name = graph_input.name
        self.size, self.fixed_batch = _input_geometry(graph_input.shape, path)
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.value_range = _value_range(metadata.get("value_range"), path)
        self.colour_order = metadata.get("colour_order", "RGB").upper()
        if self.colour_order not in ("RGB", "BGR"):
            raise WeightsError(f"{path}: colour_order metadata {self.colour_order!r}, expected RGB or BGR")
        self.batch_size = self.fixed_batch or batch_size
        self.name = f"onnx:{path.name}"
        self.provenance = dict(provenance)

    def restore(self, aligned_faces: np.ndarray, affines_x4: np.ndarray) -> np.ndarray:
        faces = torch.from_numpy(np.ascontiguousarray(aligned_faces, dtype=np.float32)).permute(0, 3, 1, 2)
        outputs = []
        for batch in faces.split(self.batch_size):
            x = to_prior_input(batch, self.size, self.value_range, self.colour_order)
            (restored, *_) = self.session.run(None, {self.input_name: x.contiguous().numpy()})
            outputs.append(from_prior_output(torch.from_numpy(restored), batch.shape[-1], self.value_range,
                                             self.colour_order))
        return torch.cat(outputs).permute(0, 2, 3, 1).numpy()


def _input_geometry(shape: list[object], path: Path) -> tuple[int, int | None]:
    """(side, fixed batch or None) of an N x 3 x S x S input; a dynamic side is DEFAULT_SIZE."""
    sides = {dim for dim in shape[2:] if isinstance(dim, int)}
    if len(shape) != 4 or shape[1] != 3 or len(sides) > 1:
        raise WeightsError(f"{path}: input shape {shape}, expected N x 3 x S x S (a face restorer)")
    batch = shape[0] if isinstance(shape[0], int) else None
    return (sides.pop() if sides else DEFAULT_SIZE), batch


def _value_range(text: str | None, path: Path) -> tuple[float, float]:
    if text is None:
        return DEFAULT_RANGE
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise WeightsError(f"{path}: value_range metadata {text!r}, expected 'low,high' such as '-1,1'") from None
    if not low < high:
        raise WeightsError(f"{path}: value_range metadata {text!r} is empty")
    return low, high
