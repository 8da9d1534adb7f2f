"""The PyTorch engine: eager on the CPU; on CUDA torch.compile with channels_last and
fp16/bf16 autocast. A photo's adapted weights are copied IN PLACE into the module's
parameters, so the compiled graph (which guards on those tensors) never recompiles."""

import copy
from collections.abc import Mapping

import torch
from torch import nn

from f2n import cpu_features
from f2n.errors import ConfigError, EngineUnavailableError
from f2n.weights.fit import check_weight_set, weight_shapes

PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


class TorchEngine:
    """:class:`~f2n.runtime.types.SREngine` running an RRDBNet with PyTorch.

    ``compile`` defaults to True on CUDA and False on the CPU (where eager is what
    was measured; see docs/adaptation.md). Low precision uses autocast, so the module
    keeps fp32 weights and ``run_fp32`` can redo a tile that overflowed.
    """

    name = "torch"

    def __init__(
        self,
        model: nn.Module,
        *,
        device: str = "cpu",
        precision: str = "fp32",
        compile: bool | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise ConfigError(f"torch engine precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise EngineUnavailableError(f"device {device!r} requested but CUDA is not available here")
        if self.device.type == "cpu" and precision == "fp16":
            raise ConfigError("torch engine precision fp16 needs --device cuda; use fp32 or bf16 on the CPU")
        if self.device.type == "cpu" and precision == "bf16" and not cpu_features.native_bf16():
            # torch would emulate bf16 (~150x slower than native, issue 27): refused as OpenVINO refuses it
            raise EngineUnavailableError(
                f"--engine torch --precision bf16 needs a CPU with {cpu_features.BF16_NEEDS}, this one has neither "
                "(torch would emulate it, far slower than fp32); use --precision fp32")
        self.precision = precision
        # A private copy: the caller's (base) model is never touched by set_weights.
        self.module = copy.deepcopy(model).to(self.device).eval().requires_grad_(False)
        if self.device.type == "cuda":
            self.module = self.module.to(memory_format=torch.channels_last)
        use_compile = self.device.type == "cuda" if compile is None else compile
        self._forward = torch.compile(self.module, dynamic=False) if use_compile else self.module

    def set_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        params = dict(self.module.named_parameters())
        check_weight_set(weight_shapes(params), state_dict, what="weights", target="the torch engine's network")
        with torch.no_grad():
            for name, param in params.items():
                param.copy_(state_dict[name])

    def run(self, tiles: torch.Tensor) -> torch.Tensor:
        return self._run(tiles, PRECISIONS[self.precision])

    def run_fp32(self, tiles: torch.Tensor) -> torch.Tensor:
        """Same as ``run`` without autocast: the retry for tiles that gave NaN/Inf."""
        return self._run(tiles, None)

    def _run(self, tiles: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
        batch = tiles.to(self.device, non_blocking=True)
        if self.device.type == "cuda":
            batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            out = self._forward(batch)
        return out.float().cpu().contiguous()
