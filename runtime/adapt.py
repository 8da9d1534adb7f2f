"""Per-photo adaptation, MetaF2N Alg. 2 (inner loop at test time).

θ_0 is the SR network's weights; for n steps θ ← opt(θ, ∇ mean(m · |f(LQ; θ) − target|))
where (LQ, target, m) are the photo's face patches, restored patches and MaskNet
weights. θ is a dict of tensors run through ``torch.func.functional_call`` on the
uncompiled RRDBNet, so the base module is never modified.

On CUDA the loss-and-gradient function is compiled once per (model, patch size,
precision) and reused across photos; the patch count (16 × the number of faces used)
is a dynamic dimension, so a photo with another face count reuses the graph instead of
recompiling (and, after 8 counts, silently falling back to eager). Only the loss and its gradient are compiled; the
update is torch.optim's eager foreach step, so the learning rate never enters a graph
and changing it recompiles nothing (the usual 0-d-tensor trick is not needed, and
torch.optim.Adam refuses a tensor lr with foreach anyway).
bf16 autocast needs no GradScaler; fp16 is refused for adaptation. GPUs before Ampere
have no native bf16 (torch would emulate it, Inductor refuses it): bf16 adaptation
runs in fp32 there, with a warning.
"""

import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Literal

import torch
import torch._functorch.config as functorch_config
from torch import nn
from torch.func import functional_call, grad_and_value

from f2n import inner_loop
from f2n.errors import ConfigError, EngineUnavailableError
from f2n.runtime.types import PatchBatch

log = logging.getLogger(__name__)
COMPILE_BACKEND = "inductor"
NATIVE_BF16_CAPABILITY = (8, 0)  # Ampere

# Measured on the oracle prior (docs/adaptation.md, scripts/measure_defaults.py).
DEFAULT_STEPS = 20
DEFAULT_LR = 1e-4
DEFAULT_OPTIMIZER = "adam"

Weights = dict[str, torch.Tensor]
Optimizer = Literal["sgd", "adam"]
Precision = Literal["fp32", "bf16"]
_AUTOCAST = {"fp32": None, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class AdaptConfig:
    steps: int = DEFAULT_STEPS
    lr: float = DEFAULT_LR
    optimizer: Optimizer = DEFAULT_OPTIMIZER
    device: str = "cpu"
    precision: Precision = "fp32"
    compile: bool | None = None  # None: compile on CUDA only

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ConfigError(f"adaptation steps must be >= 0, got {self.steps}")
        if not 0 < self.lr < math.inf:
            raise ConfigError(f"adaptation learning rate must be a finite number > 0, got {self.lr}")
        if self.optimizer not in ("sgd", "adam"):
            raise ConfigError(f"adaptation optimizer must be sgd or adam, got {self.optimizer!r}")
        if self.precision not in _AUTOCAST:
            raise ConfigError(f"adaptation precision must be fp32 or bf16 (fp16 would need loss scaling), got {self.precision!r}")
        if torch.device(self.device).type == "cuda" and not torch.cuda.is_available():
            raise EngineUnavailableError(f"adaptation device {self.device!r} requested but CUDA is not available here")

    @property
    def compiled(self) -> bool:
        return torch.device(self.device).type == "cuda" if self.compile is None else self.compile


@dataclass(frozen=True)
class AdaptStep:
    """One finished step: ``loss`` was measured at the weights before the update."""

    index: int  # 1-based
    weights: Weights  # θ_index, live tensors of the run: clone to keep them past the next step
    loss: float
    seconds: float


@dataclass(frozen=True)
class AdaptResult:
    weights: Weights  # θ_n on the CPU, canonical RRDBNet names
    losses: tuple[float, ...]  # loss at θ_0 … θ_{n−1}
    step_seconds: tuple[float, ...]
    base: Weights = field(repr=False, compare=False)  # θ_0: the model's own parameters, not copied

    @cached_property
    def delta(self) -> Weights:
        """θ_n − θ_0 on the CPU. Computed on first use: only analysis reads it, and a full
        copy of the network per photo is too much to pay for nothing."""
        return {name: value - self.base[name].detach().float().cpu() for name, value in self.weights.items()}


def masked_l1(model: nn.Module, weights: Mapping[str, torch.Tensor], lq: torch.Tensor,
              target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The inner-loop loss mean(m · |f(LQ; θ) − target|) (MetaF2N eq. 5)."""
    return inner_loop.masked_l1(functional_call(model, dict(weights), (lq,)), target, mask)


def iter_adaptation(model: nn.Module, patches: PatchBatch, config: AdaptConfig) -> Iterator[AdaptStep]:
    """Run the inner loop step by step (for snapshots); ``adapt`` is the usual entry."""
    device = torch.device(config.device)
    weights = {name: p.detach().to(device, copy=True) for name, p in model.named_parameters()}
    lq, target, mask = (t.to(device) for t in (patches.lq, patches.target, patches.weight))
    precision = adaptation_precision(config.precision, device.type, torch.cuda.get_device_capability(device) if device.type == "cuda" else None)
    loss_and_grads = _loss_and_grads_fn(model, precision, config.compiled)
    params = list(weights.values())
    optimizer = (torch.optim.SGD(params, lr=config.lr, foreach=True) if config.optimizer == "sgd"
                 else torch.optim.Adam(params, lr=config.lr, foreach=True))
    for index in range(1, config.steps + 1):
        start = time.perf_counter()
        grads, loss = loss_and_grads(weights, lq, target, mask)
        for param, grad in zip(params, grads.values()):
            param.grad = grad
        optimizer.step()
        loss_value = float(loss)  # also synchronises CUDA before the clock stops
        yield AdaptStep(index, weights, loss_value, time.perf_counter() - start)


def adapt(model: nn.Module, patches: PatchBatch, config: AdaptConfig,
          on_step: Callable[[AdaptStep], None] | None = None) -> AdaptResult:
    """Adapt a copy of ``model``'s weights to one photo's face patches. ``on_step`` sees each
    step as it finishes (f2n-eval upscales snapshots there)."""
    losses, seconds = [], []
    final = {name: p.detach() for name, p in model.named_parameters()}
    for step in iter_adaptation(model, patches, config):
        if on_step is not None:
            on_step(step)
        losses.append(step.loss)
        seconds.append(step.seconds)
        final = step.weights
    weights = {name: value.detach().float().cpu().clone() for name, value in final.items()}
    base = {name: p.detach() for name, p in model.named_parameters()}
    return AdaptResult(weights, tuple(losses), tuple(seconds), base)


def adaptation_precision(precision: str, device_type: str, capability: tuple[int, int] | None) -> str:
    """The precision adaptation runs in: bf16 falls back to fp32 on a GPU of compute
    ``capability`` below Ampere, which has no native bf16."""
    if precision == "bf16" and device_type == "cuda" and capability is not None and tuple(capability) < NATIVE_BF16_CAPABILITY:
        log.warning("bf16 adaptation needs native bf16 (sm80+), this GPU is sm%d%d: adapting in fp32", *capability)
        return "fp32"
    return precision


@lru_cache(maxsize=8)
def _loss_and_grads_fn(model: nn.Module, precision: str, compiled: bool) -> Callable:
    """(weights, lq, target, mask) -> (grads dict, loss). Cached so that a compiled
    function, with its graph per patch shape, is reused across photos."""
    dtype = _AUTOCAST[precision]

    def loss(weights: Weights, lq: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with torch.autocast(lq.device.type, dtype=dtype, enabled=dtype is not None):
            out = functional_call(model, weights, (lq,))
        return inner_loop.masked_l1(out.float(), target, mask)

    step = grad_and_value(loss)
    if not compiled:
        return step
    compiled_step = torch.compile(step, backend=COMPILE_BACKEND)

    def run(weights: Weights, *patches: torch.Tensor) -> tuple[Weights, torch.Tensor]:
        for tensor in patches:  # the patch count: one graph for every number of faces
            torch._dynamo.maybe_mark_dynamic(tensor, 0)
        # The compiled backward's autocast default differs from eager: say it explicitly.
        with functorch_config.patch(backward_pass_autocast="same_as_forward"):
            return compiled_step(weights, *patches)

    return run
