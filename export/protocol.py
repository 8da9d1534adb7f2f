"""The contract every SR engine keeps (torch, ONNX Runtime, OpenVINO, ncnn, AOTInductor, TensorRT):
what the runtime may ask of an engine, whichever one ``make_engine`` built."""

from collections.abc import Mapping
from typing import Protocol

import torch


class SREngine(Protocol):
    """An inference engine for the x4 SR network (torch, onnx, openvino, aoti, trt), built once
    with θ and then given each photo's θ′ through ``set_weights`` without a rebuild.

    The contract, whichever engine:

    * ``set_weights`` copies: when it returns, the engine runs with exactly those values, and the
      caller may change or free its tensors (the torch and AOTInductor engines copy them into their
      own parameters in place; ONNX Runtime and OpenVINO swap in a snapshot). A call costs up to a
      graph recompile (OpenVINO): callers skip it when the engine already holds the weights.
    * One engine serves one photo at a time: ``set_weights`` followed by the photo's ``run`` calls
      must not interleave with another photo's. :class:`~f2n.runtime.pipeline.AdaptAndRun` holds a
      lock per engine for that, so threads may share a pipeline (or pipelines an engine).
    * ``run`` and ``run_fp32`` only read the weights.
    """

    name: str

    def set_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Replace all weights (canonical RRDBNet names) with a photo's θ_n (copied, see above)."""

    def run(self, tiles: torch.Tensor) -> torch.Tensor:
        """(N, 3, h, w) float32 RGB in [0, 1] on the CPU -> (N, 3, 4h, 4w) float32 on the CPU."""

    def run_fp32(self, tiles: torch.Tensor) -> torch.Tensor:
        """``run`` in fp32 with the same weights: the retry of tiles whose low-precision output
        overflowed to NaN/Inf (an fp16/bf16 graph hands them to an fp32 twin, f2n.export.fallback)."""
