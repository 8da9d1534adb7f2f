"""The fp32 retry of the low-precision export engines.

``tiled_upscale`` redoes a tile that came out NaN/Inf through the engine's
``run_fp32``. An fp16 ONNX graph, an fp16/bf16 AOTInductor package or TensorRT plan
cannot run in fp32, and rebuilding one per tile is out of the question, so these
engines hand such tiles to an fp32 twin: the eager PyTorch RRDBNet, built from the
weight shapes on first need (a photo without overflow never builds it), with the value
range the engine's graph records.

The twin runs with θ_n in fp32, not with the engine's rounded copy: the tiles that
overflow are those with extreme activations, where fp16 rounding of the weights is
amplified too (a test tile flipped pixels from 0 to 1 with rounded weights). So a
low-precision engine holds one fp32 copy of θ_n on the CPU until the twin is built,
then in the twin's parameters.
"""

from collections.abc import Mapping
from pathlib import Path

import torch

from f2n.export.torch_engine import TorchEngine
from f2n.nets.rrdbnet import RRDBNet, ValueRange
from f2n.weights.sr import infer_hyperparameters


class Fp32Twin:
    """Follows an engine's weights and runs the tiles it cannot run in fp32."""

    def __init__(self, device: str, owner: str, value_range: ValueRange) -> None:
        self.device = device
        self.owner = owner  # the engine's name, for messages
        self.value_range = value_range  # the owner's graph's: the twin must map in and out as it does
        self._engine: TorchEngine | None = None
        self._pending: dict[str, torch.Tensor] | None = None  # θ_n until the twin is built

    def follow(self, weights: Mapping[str, torch.Tensor]) -> None:
        """The owner's new weights, checked already. Every owner calls this from its
        ``set_weights``, which its constructor calls, so the twin has weights before any run."""
        if self._engine is not None:
            self._engine.set_weights(weights)  # copied into the twin's parameters
        else:
            self._pending = {key: value.detach().to("cpu", torch.float32, copy=True) for key, value in weights.items()}

    def run(self, tiles: torch.Tensor) -> torch.Tensor:
        if self._engine is None:
            with torch.device("meta"):
                hyper = infer_hyperparameters(self._pending, Path(f"the {self.owner} engine's weights"))
                model = RRDBNet(**hyper, value_range=self.value_range)
            model.load_state_dict(self._pending, strict=True, assign=True)
            self._engine = TorchEngine(model, device=self.device, compile=False)
            self._pending = None
        return self._engine.run(tiles)
