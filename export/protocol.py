"""The contract every SR engine keeps (torch, ONNX Runtime, OpenVINO, AOTInductor, TensorRT):
what the runtime may ask of an engine, whichever one ``make_engine`` built."""

from collections.abc import Mapping
from typing import Protocol

import torch


class SREngine(Protocol):
    """An inference engine for the x4 SR network. Every engine (torch, onnx, aoti,
    trt) takes a photo's adapted weights through ``set_weights`` without a rebuild
    and runs batches of tiles through ``run``."""

    name: str

    def set_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Replace all weights (canonical RRDBNet names) with a photo's θ_n."""

    def run(self, tiles: torch.Tensor) -> torch.Tensor:
        """(N, 3, h, w) float32 RGB in [0, 1] on the CPU -> (N, 3, 4h, 4w) float32 on the CPU."""
