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
from functools import cached_property
from typing import Literal

import torch
import torch._functorch.config as functorch_config
from torch import nn
from torch.func import functional_call, grad_and_value

from f2n import inner_loop
from f2n.errors import ConfigError, EngineUnavailableError
from f2n.runtime.adapt_params import PARAM_SUBSETS, Fold, InnerLoopVariant, ParamSubset, Penalty, make_param_space, overlay
from f2n.runtime.context_patches import TextureView
from f2n.runtime.inner_update import make_scaled_sgd, make_update
from f2n.runtime.loss_networks import CRITIC_WEIGHT, CRITIC_WEIGHTS, PERCEPTUAL_WEIGHT, PERCEPTUAL_WEIGHTS, LossNetworks
from f2n.runtime.types import PatchBatch
from f2n.texture_loss import PATCH, random_directions, texture_distance

log = logging.getLogger(__name__)
COMPILE_BACKEND = "inductor"
NATIVE_BF16_CAPABILITY = (8, 0)  # Ampere

# From the adaptation study with the realistic prior (docs/adaptation.md, f2n.eval.study):
# biases only, Adam α 1e-3, a budget of 10 steps, early stopping after 2 steps without a
# better held-out loss. For the stock network; a meta-trained checkpoint brings its own.
DEFAULT_STEPS = 10
DEFAULT_LR = 1e-3
DEFAULT_OPTIMIZER = "adam"
DEFAULT_PARAMS: ParamSubset = "bias"
DEFAULT_HOLDOUT = 0.25  # a quarter of the pairs, at least one
DEFAULT_PATIENCE = 2
DEFAULT_BAND_SIGMA = 2.0  # output px: the Gaussian that splits low band (fidelity) from high band (texture)
DEFAULT_CONTEXT = 8  # non-face LQ patches for the teacher and texture terms

# The inner loop's objective by name (``--objective``): AdaptConfig fields each one sets.
OBJECTIVES: dict[str, dict[str, float]] = {
    "l1": {},  # MetaF2N's mask-weighted L1 toward the restored faces
    "lowband": {"lowpass_sigma": DEFAULT_BAND_SIGMA},  # the same L1 on the low band only
    "teacher": {"teacher": 1.0},  # L1 + the base network as a frozen teacher of the non-face high band
    "lowband+teacher": {"lowpass_sigma": DEFAULT_BAND_SIGMA, "teacher": 1.0},
    # low-band L1 + the sliced Wasserstein texture term (faces toward the prior, the rest toward θ)
    "lowband+swd": {"lowpass_sigma": DEFAULT_BAND_SIGMA, "swd": 1.0},
    # For users with the weights (f2n-models fetch): Real-ESRGAN's fine-tuning terms at its weights,
    # the released x4plus discriminator as a texture critic and VGG-19's perceptual loss
    "lowband+critic": {"lowpass_sigma": DEFAULT_BAND_SIGMA, "critic": CRITIC_WEIGHT},
    "lowband+perceptual": {"lowpass_sigma": DEFAULT_BAND_SIGMA, "perceptual": PERCEPTUAL_WEIGHT},
    "lowband+perceptual+critic": {"lowpass_sigma": DEFAULT_BAND_SIGMA, "perceptual": PERCEPTUAL_WEIGHT,
                                  "critic": CRITIC_WEIGHT},
}
DEFAULT_OBJECTIVE = "l1"
DEFAULT_STRENGTH = 1.0
DEFAULT_TEXTURE_FLOOR = 0.0
DEFAULT_TEXTURE_CEILING = 0.0

Weights = dict[str, torch.Tensor]
Optimizer = Literal["sgd", "adam"]
Precision = Literal["fp32", "bf16"]
_AUTOCAST = {"fp32": None, "bf16": torch.bfloat16}
# A held-out loss computed from bf16 outputs moves by rounding alone: an "improvement" must exceed
# bf16's relative rounding (2^-8) to count, for the guard and for early stopping alike.
_LOSS_TOLERANCE = {"fp32": 0.0, "bf16": 2.0 ** -8}


@dataclass(frozen=True)
class AdaptConfig:
    steps: int = DEFAULT_STEPS  # the budget: early stopping may take fewer
    lr: float = DEFAULT_LR
    optimizer: Optimizer = DEFAULT_OPTIMIZER
    device: str = "cpu"
    precision: Precision = "fp32"
    compile: bool | None = None  # None: compile on CUDA only
    params: ParamSubset = DEFAULT_PARAMS  # which parameters adapt (f2n.runtime.adapt_params)
    holdout: float = DEFAULT_HOLDOUT  # share of the pairs held out for early stopping and the guard
    patience: int = DEFAULT_PATIENCE  # steps without a better held-out loss before stopping
    guard: bool = True  # hand back θ when the held-out loss never beats θ's
    # Objectives that keep texture (issue 28; docs/adaptation.md "Objectives, strength, whole-photo guard"):
    lowpass_sigma: float = 0.0  # > 0: fidelity on G_σ-low-passed residuals only (σ in output px)
    teacher: float = 0.0  # weight of |HP(f(x; θ′)) − HP(f(x; θ))| on non-face patches x (a frozen teacher)
    swd: float = 0.0  # weight of the sliced Wasserstein texture term (f2n.texture_loss) on high-band patch sets
    band_sigma: float = DEFAULT_BAND_SIGMA  # σ of the high band HP = 1 − G_σ the teacher and the guard use
    context: int = DEFAULT_CONTEXT  # non-face LQ patches drawn for the teacher, texture and critic terms
    # Real-ESRGAN's terms, their networks from the registry (f2n.runtime.loss_networks; passed to adapt):
    critic: float = 0.0  # weight of BCE(D(f(x; θ′)), 1) under the frozen x4plus D, on face and non-face outputs
    perceptual: float = 0.0  # weight of the VGG-19 perceptual loss of the face outputs toward the restored faces
    strength: float = DEFAULT_STRENGTH  # θ + strength·(θ′ − θ) is handed on: 0 is θ, 1 the adapted weights
    texture_floor: float = DEFAULT_TEXTURE_FLOOR  # > 0: refuse θ′ when its non-face high-band energy / θ's < floor (blur)
    texture_ceiling: float = DEFAULT_TEXTURE_CEILING  # > 0: refuse θ′ when that ratio > ceiling (noise made texture)

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ConfigError(f"adaptation steps must be >= 0, got {self.steps}")
        if not 0 < self.lr < math.inf:
            raise ConfigError(f"adaptation learning rate must be a finite number > 0, got {self.lr}")
        if self.optimizer not in ("sgd", "adam"):
            raise ConfigError(f"adaptation optimizer must be sgd or adam, got {self.optimizer!r}")
        if self.precision not in _AUTOCAST:
            raise ConfigError(f"adaptation precision must be fp32 or bf16 (fp16 would need loss scaling), got {self.precision!r}")
        if self.params not in PARAM_SUBSETS:
            raise ConfigError(f"adapted parameters must be one of {', '.join(PARAM_SUBSETS)}, got {self.params!r}")
        if self.patience < 1:
            raise ConfigError(f"patience must be >= 1, got {self.patience}")
        if not 0 <= self.holdout < 1:
            raise ConfigError(f"holdout must be in [0, 1), got {self.holdout}")
        if not 0 <= self.strength <= 1:
            raise ConfigError(f"adaptation strength must be in [0, 1], got {self.strength}")
        if not 0 <= self.texture_floor < 1:
            raise ConfigError(f"texture_floor must be in [0, 1), got {self.texture_floor}")
        if self.texture_ceiling and not 1 < self.texture_ceiling < math.inf:
            raise ConfigError(f"texture_ceiling must be 0 (off) or a finite number > 1, got {self.texture_ceiling}")
        if (not 0 <= self.lowpass_sigma < math.inf or not 0 <= self.teacher < math.inf or not 0 <= self.swd < math.inf
                or not 0 < self.band_sigma < math.inf or self.context < 0):
            raise ConfigError(f"lowpass_sigma, teacher and swd must be finite >= 0, band_sigma finite > 0 and context "
                              f">= 0, got {self.lowpass_sigma}, {self.teacher}, {self.swd}, {self.band_sigma}, "
                              f"{self.context}")
        if not 0 <= self.critic < math.inf or not 0 <= self.perceptual < math.inf:
            raise ConfigError(f"critic and perceptual weights must be finite >= 0, "
                              f"got {self.critic}, {self.perceptual}")
        if torch.device(self.device).type == "cuda" and not torch.cuda.is_available():
            raise EngineUnavailableError(f"adaptation device {self.device!r} requested but CUDA is not available here")

    @property
    def compiled(self) -> bool:
        return torch.device(self.device).type == "cuda" if self.compile is None else self.compile

    @property
    def wants_context(self) -> bool:
        """Non-face patches are needed for training: the teacher, the texture term or the critic is
        on (the whole-photo guard has its own view, ``f2n.runtime.context_patches.texture_view``)."""
        return self.context > 0 and (self.teacher > 0 or self.swd > 0 or self.critic > 0)

    @property
    def wants_loss_networks(self) -> bool:
        """The critic or the perceptual term is on: ``adapt`` needs their networks
        (:func:`f2n.runtime.loss_networks.load_loss_networks`)."""
        return self.critic > 0 or self.perceptual > 0

    @property
    def texture_guarded(self) -> bool:
        """The whole-photo guard is on (a floor, a ceiling or both)."""
        return self.texture_floor > 0 or self.texture_ceiling > 0

    @property
    def objective(self) -> str:
        """The inner loop's loss in words (the report's ``objective``)."""
        parts = [f"low-band L1 σ={self.lowpass_sigma:g}" if self.lowpass_sigma else "L1"]
        if self.teacher:
            parts.append(f"{self.teacher:g}·teacher σ={self.band_sigma:g}")
        if self.swd:
            parts.append(f"{self.swd:g}·SWD σ={self.band_sigma:g}")
        if self.perceptual:
            parts.append(f"{self.perceptual:g}·perceptual {PERCEPTUAL_WEIGHTS}")
        if self.critic:
            parts.append(f"{self.critic:g}·critic {CRITIC_WEIGHTS}")
        return " + ".join(parts)


def objective_settings(name: str) -> dict[str, float]:
    """The AdaptConfig fields of the objective ``name`` (``OBJECTIVES``); a ConfigError otherwise."""
    if name not in OBJECTIVES:
        raise ConfigError(f"adaptation objective must be one of {', '.join(OBJECTIVES)}, got {name!r}")
    return {"lowpass_sigma": 0.0, "teacher": 0.0, "swd": 0.0, "critic": 0.0, "perceptual": 0.0, **OBJECTIVES[name]}


@dataclass(frozen=True)
class AdaptStep:
    """One finished step: ``loss`` was measured at the weights before the update."""

    index: int  # 1-based
    weights: Weights  # θ_index, live tensors of the run: clone to keep them past the next step
    loss: float
    seconds: float


@dataclass(frozen=True)
class AdaptResult:
    weights: Weights  # θ′ on the CPU, canonical RRDBNet names: θ itself when ``adapted`` is False
    losses: tuple[float, ...]  # training loss at θ_0 … θ_{t−1}, t = the steps actually taken
    step_seconds: tuple[float, ...]
    base: Weights = field(repr=False, compare=False)  # θ_0: the model's own parameters, not copied
    adapted: bool = True  # False: the guard handed back θ (``reason`` says why)
    reason: str = ""
    holdout_losses: tuple[float, ...] = ()  # held-out loss at θ_0 … θ_t (empty without held-out pairs)
    best_step: int = 0  # the step whose weights were kept (t without held-out pairs)
    texture_ratio: float | None = None  # non-face high-band energy f(θ′) / f(θ) (None without non-face patches)

    @cached_property
    def delta(self) -> Weights:
        """θ_n − θ_0 on the CPU. Computed on first use: only analysis reads it, and a full
        copy of the network per photo is too much to pay for nothing."""
        return {name: value - self.base[name].detach().float().cpu() for name, value in self.weights.items()}


def masked_l1(model: nn.Module, weights: Mapping[str, torch.Tensor], lq: torch.Tensor,
              target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The inner-loop loss mean(m · |f(LQ; θ) − target|) (MetaF2N eq. 5)."""
    return inner_loop.masked_l1(functional_call(model, dict(weights), (lq,)), target, mask)


def holdout_indices(count: int, share: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(training, held-out) pair indices: a seeded random ``share`` of ``count`` is held out,
    at least one when ``share`` > 0, none when fewer than 2 pairs exist."""
    held = min(count - 1, max(1, round(share * count))) if share > 0 else 0
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    return order[max(held, 0):], order[:max(held, 0)]


def split_holdout(patches: PatchBatch, share: float, seed: int) -> tuple[PatchBatch, PatchBatch | None]:
    """(training pairs, held-out pairs or None), as ``holdout_indices`` splits them."""
    train, held = holdout_indices(len(patches), share, seed)
    if len(held) == 0:
        return patches, None
    pick = lambda index: PatchBatch(patches.lq[index], patches.target[index], patches.weight[index])  # noqa: E731
    return pick(train), pick(held)


def improves(loss: float, than: float, precision: str = "fp32") -> bool:
    """``loss`` is lower than ``than`` by more than ``precision``'s rounding can explain."""
    return loss < than * (1.0 - _LOSS_TOLERANCE[precision])


def guard_decision(base_loss: float, best_loss: float, precision: str = "fp32") -> tuple[bool, str]:
    """The never-worse guard: adapt only when the held-out loss beat the base network's (by more
    than rounding in ``precision``, the precision the losses were computed in)."""
    if improves(best_loss, base_loss, precision):
        return True, ""
    return False, (f"guard: held-out face loss did not improve (base {base_loss:.5f}, "
                   f"best adapted {best_loss:.5f}); base weights used")


def iter_adaptation(model: nn.Module, patches: PatchBatch, config: AdaptConfig, *, seed: int = 0,
                    context: torch.Tensor | None = None, variant: InnerLoopVariant = InnerLoopVariant(),
                    loss_networks: LossNetworks | None = None) -> Iterator[AdaptStep]:
    """Run the inner loop on all of ``patches`` step by step (for snapshots); ``adapt`` is
    the usual entry, with held-out pairs, early stopping and the guard. ``context``: (K, 3, p, p)
    non-face LQ patches for the teacher, texture and critic terms; ignored when none is on.
    ``variant``: a study's changes to the loop (f2n.eval.study_variants). ``loss_networks``: the
    frozen critic and VGG-19 the objective's ``critic`` and ``perceptual`` terms need."""
    _check_loss_networks(config, loss_networks)
    device = torch.device(config.device)
    base = {name: p.detach().to(device) for name, p in model.named_parameters()}
    space = variant.space(base, seed) if variant.space is not None else make_param_space(base, config.params)
    lq, target, mask = (t.to(device) for t in (patches.lq, patches.target, patches.weight))
    precision = resolved_precision(config)
    loss_and_grads = _loss_and_grads_fn(model, precision, config.compiled, space.fold_with, variant.penalty,
                                        config.lowpass_sigma, config.teacher, config.band_sigma, config.swd,
                                        config.critic, config.perceptual,
                                        loss_networks if config.wants_loss_networks else None)
    teach: tuple[torch.Tensor, ...] = ()
    if (config.teacher or config.swd or config.critic) and context is not None:
        teach = (context.to(device),)
        if config.teacher or config.swd:
            with torch.no_grad():  # the frozen teacher: θ's output on the non-face patches, computed once
                teach += (functional_call(model, base, (teach[0],)).float(),)
    # The texture term's slices: drawn once per photo, seeded, so a run is reproducible
    fixed = {"directions": random_directions(3 * PATCH ** 2, seed=seed).to(device)} if config.swd else {}
    params = list(space.trainable.values())
    if variant.step_sizes is not None:  # Meta-SGD: learnt α per element, θ ← θ − α ⊙ ∇L
        missing = sorted(set(space.trainable) - set(variant.step_sizes))
        if missing:
            raise ConfigError(f"the step sizes have none for {', '.join(missing[:3])} ({len(missing)} adapted tensors)")
        update = make_scaled_sgd(params, [variant.step_sizes[name] for name in space.trainable])
    else:  # torch.optim's step without torch.optim's import cost
        update = make_update(params, config.optimizer, config.lr)
    generator = torch.Generator().manual_seed(seed)
    for index in range(1, config.steps + 1):
        start = time.perf_counter()
        batch = PatchBatch(lq, target, mask)
        if variant.transform is not None:
            batch = variant.transform(batch, generator)
        grads, loss = loss_and_grads(space.trainable, base, batch.lq, batch.target, batch.weight, *teach, **fixed)
        update(list(grads.values()))
        loss_value = float(loss)  # also synchronises CUDA before the clock stops
        with torch.no_grad():
            weights = space.fold(base)
        yield AdaptStep(index, weights, loss_value, time.perf_counter() - start)


def adapt(model: nn.Module, patches: PatchBatch, config: AdaptConfig,
          on_step: Callable[[AdaptStep], None] | None = None, *, seed: int = 0,
          held_out: PatchBatch | None = None, context: torch.Tensor | None = None,
          variant: InnerLoopVariant = InnerLoopVariant(), guard_view: TextureView | None = None,
          loss_networks: LossNetworks | None = None) -> AdaptResult:
    """Adapt a copy of ``model``'s weights to one photo's face patches. ``on_step`` sees each
    step as it finishes (f2n-eval upscales snapshots there).

    A seeded share of the pairs (``config.holdout``) is held out: the run stops once their
    loss has not improved for ``config.patience`` steps and keeps the step with the lowest
    held-out loss; with ``config.guard`` the base weights are kept when no step beat them.
    ``held_out``: other pairs to hold out instead (ReDegNet trains on synthetic pairs and checks
    on the photo's real face pairs); all of ``patches`` are then trained on.
    ``context``: (K, 3, p, p) non-face LQ patches of the photo (``f2n.runtime.context_patches``):
    the teacher and texture terms train on them. ``guard_view``: what the whole-photo guard
    (``config.texture_floor`` / ``texture_ceiling``) compares f(θ′) and f(θ) on
    (``f2n.runtime.context_patches.texture_view``; ``context`` without it); it refuses θ′ when
    the non-face high-band energy there fell below the floor or rose above the ceiling. The kept
    θ′ is moved only ``config.strength`` of the way from θ, before the guard looks at it.
    ``variant``: a study's changes to the inner loop (f2n.eval.study_variants). ``loss_networks``:
    the frozen networks of the ``critic`` and ``perceptual`` terms
    (:func:`f2n.runtime.loss_networks.load_loss_networks`), needed when either is on; early
    stopping and the guard still judge the held-out pairs' fidelity (the low-band L1) alone.
    """
    base = {name: p.detach() for name, p in model.named_parameters()}
    train, held = (patches, held_out) if held_out is not None else split_holdout(patches, config.holdout, seed)
    losses: list[float] = []
    seconds: list[float] = []
    held_losses: list[float] = []
    kept, kept_step, best_loss, stale = base, 0, math.inf, 0
    precision = resolved_precision(config)
    if held is not None:
        held_loss = _held_out_loss_fn(model, held, config)
        held_losses.append(held_loss(base))
    for step in iter_adaptation(model, train, config, seed=seed, context=context, variant=variant,
                                loss_networks=loss_networks):
        if on_step is not None:
            on_step(step)
        losses.append(step.loss)
        seconds.append(step.seconds)
        if held is None:
            kept, kept_step = step.weights, step.index
            continue
        held_losses.append(held_loss(step.weights))
        if improves(held_losses[-1], best_loss, precision):
            best_loss, stale = held_losses[-1], 0
            # Only the tensors the step changed are copied: with a parameter subset (biases by
            # default) the rest are θ's own tensors, and copying them would cost a network per step.
            kept = {k: v if _is_base_tensor(v, base[k]) else v.detach().clone() for k, v in step.weights.items()}
            kept_step = step.index
        else:
            stale += 1
            if stale >= config.patience:
                break
    adapted, reason = True, ""
    if held is not None and losses and config.guard:
        adapted, reason = guard_decision(held_losses[0], best_loss, precision)
    kept = with_strength(base, kept, config.strength)
    view = guard_view if guard_view is not None else TextureView(context) if context is not None else None
    ratio = texture_ratio(model, base, kept, view, config.band_sigma) if view is not None and losses else None
    if adapted and ratio is not None and config.texture_guarded:
        adapted, reason = texture_guard_decision(ratio, config.texture_floor, config.texture_ceiling)
    if not adapted:
        kept, kept_step = base, 0
    weights = {name: value.detach().float().cpu().clone() for name, value in kept.items()}
    return AdaptResult(weights, tuple(losses), tuple(seconds), base, adapted, reason, tuple(held_losses), kept_step,
                       ratio)


def with_strength(base: Mapping[str, torch.Tensor], adapted: Weights, strength: float) -> Weights:
    """θ + strength·(θ′ − θ), as plain weights (every engine takes them); tensors θ′ left
    alone stay θ's own."""
    if strength == 1:
        return adapted
    return {k: v if _is_base_tensor(v, base[k]) else base[k] + strength * (v - base[k]) for k, v in adapted.items()}


@torch.no_grad()
def texture_ratio(model: nn.Module, base: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor],
                  view: TextureView | torch.Tensor, sigma: float = DEFAULT_BAND_SIGMA) -> float:
    """mean(HP(f(x; θ′))²) / mean(HP(f(x; θ))²) over the non-face pixels of ``view`` (a
    TextureView, or non-face LQ patches x): below 1 the adapted network draws less texture than
    the base network away from the faces, above 1 more."""
    view = view if isinstance(view, TextureView) else TextureView(view)
    device = next(iter(base.values())).device
    lq = view.lq.to(device)
    adapted, original = (functional_call(model, {k: v.to(device) for k, v in w.items()}, (lq,)).float()
                         for w in (weights, base))
    return band_energy_ratio(adapted, original, view.keep, sigma)


def band_energy_ratio(adapted: torch.Tensor, original: torch.Tensor, keep: torch.Tensor | None,
                      sigma: float = DEFAULT_BAND_SIGMA) -> float:
    """High-band energy of ``adapted`` over ``original`` (N, C, H, W outputs), over the pixels
    ``keep`` (N, 1, h, w LQ mask, resized nearest to the outputs; None: all) marks."""
    energy = []
    for out in (adapted, original):
        band = inner_loop.high_band(out, sigma).pow(2)
        if keep is None:
            energy.append(float(band.mean()))
        else:
            mask = torch.nn.functional.interpolate(keep.to(band.device), size=band.shape[-2:], mode="nearest")
            energy.append(float((band * mask).sum() / (mask.sum() * band.shape[1])))
    return energy[0] / max(energy[1], 1e-12)


def texture_guard_decision(ratio: float, floor: float, ceiling: float = 0.0) -> tuple[bool, str]:
    """The whole-photo guard: θ′ only when its non-face high-band energy over θ's is at least
    ``floor`` (blurring the rest of the photo refuses it) and at most ``ceiling`` (turning noise
    into texture refuses it); 0 turns either bound off."""
    if ratio < floor:
        change = "lost"
    elif ceiling and ratio > ceiling:
        change = "gained"
    else:
        return True, ""
    allowed = f"{floor:.2f}-{ceiling:.2f}" if ceiling else f">= {floor:.2f}"
    return False, (f"guard: the non-face output {change} texture (high-band energy {ratio:.2f}× the base "
                   f"network's, allowed {allowed}); base weights used")


def _check_loss_networks(config: AdaptConfig, networks: LossNetworks | None) -> None:
    """The objective's critic and perceptual terms have their networks (one ConfigError line)."""
    for weight, present, what, loader in ((config.critic, networks is not None and networks.critic is not None,
                                           "critic", "critic=True"),
                                          (config.perceptual, networks is not None and networks.perceptual is not None,
                                           "perceptual", "perceptual=True")):
        if weight and not present:
            raise ConfigError(f"the objective's {what} term (weight {weight:g}) needs its network: pass "
                              f"loss_networks=load_loss_networks({loader}) (f2n.runtime.loss_networks)")


def _is_base_tensor(value: torch.Tensor, base: torch.Tensor) -> bool:
    """``value`` is θ's own tensor (the inner loop left it untouched), not a copy of it."""
    return value.device == base.device and value.data_ptr() == base.data_ptr()


def _held_out_loss_fn(model: nn.Module, held: PatchBatch, config: AdaptConfig) -> Callable[[Weights], float]:
    device = torch.device(config.device)
    lq, target, mask = (t.to(device) for t in (held.lq, held.target, held.weight))
    dtype = _AUTOCAST[resolved_precision(config)]  # as the training steps: fp32 before Ampere

    @torch.no_grad()
    def loss(weights: Weights) -> float:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            out = functional_call(model, {k: v.to(device) for k, v in weights.items()}, (lq,))
        return float(inner_loop.lowband_masked_l1(out.float(), target, mask, config.lowpass_sigma))

    return loss


def resolved_precision(config: AdaptConfig) -> str:
    """The precision ``config`` adapts in on its device (:func:`adaptation_precision`)."""
    device = torch.device(config.device)
    capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
    return adaptation_precision(config.precision, device.type, capability)


def adaptation_precision(precision: str, device_type: str, capability: tuple[int, int] | None) -> str:
    """The precision adaptation runs in: bf16 falls back to fp32 on a GPU of compute
    ``capability`` below Ampere, which has no native bf16."""
    if precision == "bf16" and device_type == "cuda" and capability is not None and tuple(capability) < NATIVE_BF16_CAPABILITY:
        log.warning("bf16 adaptation needs native bf16 (sm80+), this GPU is sm%d%d: adapting in fp32", *capability)
        return "fp32"
    return precision


def _loss_and_grads_fn(model: nn.Module, precision: str, compiled: bool, fold_with: Fold = overlay,
                       penalty: Penalty | None = None, lowpass_sigma: float = 0.0, teacher: float = 0.0,
                       band_sigma: float = DEFAULT_BAND_SIGMA, swd: float = 0.0, critic: float = 0.0,
                       perceptual: float = 0.0, networks: LossNetworks | None = None) -> Callable:
    """(trainable, base, lq, target, mask[, context[, teacher_out]][, directions=]) -> (grads of trainable, loss).
    Cached on ``model`` so that a compiled function, with its graph per patch shape, is reused across photos and
    dies with the model (a cache keyed on the model would keep every model and graph alive); ``networks``
    (the critic's and VGG-19, by identity) are part of the key and live as long."""
    cache = model.__dict__.get(_STEP_CACHE)
    if cache is None or cache[0] != id(model):  # none yet, or one copied along with the model
        cache = (id(model), {})
        model.__dict__[_STEP_CACHE] = cache
    key = (precision, compiled, fold_with, penalty, lowpass_sigma, teacher, band_sigma, swd, critic, perceptual,
           networks)
    if key not in cache[1]:
        cache[1][key] = _make_loss_and_grads(model, *key)
    return cache[1][key]


_STEP_CACHE = "_f2n_loss_and_grads"


def _eager_grad_and_value(loss: Callable[..., torch.Tensor]) -> Callable[..., tuple[Weights, torch.Tensor]]:
    """``torch.func.grad_and_value(loss)`` through ``torch.autograd.grad``: torch.func imports
    torch._dynamo on its first call, 149 MiB that stay resident (issue 27, memory); eager needs none of it."""
    def step(trainable: Weights, *args: torch.Tensor, **fixed: torch.Tensor) -> tuple[Weights, torch.Tensor]:
        with torch.enable_grad():
            leaves = {name: value.detach().requires_grad_() for name, value in trainable.items()}
            value = loss(leaves, *args, **fixed)
            grads = torch.autograd.grad(value, list(leaves.values()), allow_unused=True)
        filled = [torch.zeros_like(leaf) if grad is None else grad for leaf, grad in zip(leaves.values(), grads)]
        return dict(zip(leaves, filled)), value.detach()

    return step


def _make_loss_and_grads(model: nn.Module, precision: str, compiled: bool, fold_with: Fold, penalty: Penalty | None,
                         lowpass_sigma: float, teacher: float, band_sigma: float, swd: float, critic: float,
                         perceptual: float, networks: LossNetworks | None) -> Callable:
    dtype = _AUTOCAST[precision]

    def loss(trainable: Weights, base: Weights, lq: torch.Tensor, target: torch.Tensor,
             mask: torch.Tensor, context: torch.Tensor | None = None,
             teacher_out: torch.Tensor | None = None, directions: torch.Tensor | None = None) -> torch.Tensor:
        weights = fold_with(base, trainable)
        with torch.autocast(lq.device.type, dtype=dtype, enabled=dtype is not None):
            out = functional_call(model, weights, (lq,))
        value = inner_loop.lowband_masked_l1(out.float(), target, mask, lowpass_sigma)
        if swd and directions is not None:  # the faces' texture toward the prior's, as a distribution
            value = value + swd * texture_distance(out.float(), target, directions, band_sigma)
        if perceptual and networks is not None:  # Real-ESRGAN's output-vs-target term, on the faces
            with torch.autocast(lq.device.type, dtype=dtype, enabled=dtype is not None):
                value = value + perceptual * networks.perceptual_loss(out, target).float()
        student = None
        if (teacher or swd or critic) and context is not None:
            with torch.autocast(lq.device.type, dtype=dtype, enabled=dtype is not None):
                student = functional_call(model, weights, (context,)).float()
            if teacher:  # HP is linear: HP(f(x; θ′)) − HP(f(x; θ)) = HP(f(x; θ′) − f(x; θ))
                value = value + teacher * inner_loop.high_band(student - teacher_out, band_sigma).abs().mean()
            if swd and directions is not None:  # the rest of the photo's texture toward the base network's
                value = value + swd * texture_distance(student, teacher_out, directions, band_sigma)
        if critic and networks is not None:  # the frozen D judges face and non-face outputs alike
            with torch.autocast(lq.device.type, dtype=dtype, enabled=dtype is not None):
                judged = (out,) if student is None else (out, student)
                value = value + critic * networks.critic_loss(*judged).float()
        if penalty is not None:
            value = value + penalty(weights, base)
        return value

    if not compiled:
        return _eager_grad_and_value(loss)
    compiled_step = torch.compile(grad_and_value(loss), backend=COMPILE_BACKEND)

    def run(trainable: Weights, base: Weights, *patches: torch.Tensor,
            **fixed: torch.Tensor) -> tuple[Weights, torch.Tensor]:
        for tensor in patches:  # the patch count: one graph for every number of faces
            torch._dynamo.maybe_mark_dynamic(tensor, 0)
        # The compiled backward's autocast default differs from eager: say it explicitly.
        with functorch_config.patch(backward_pass_autocast="same_as_forward"):
            return compiled_step(trainable, base, *patches, **fixed)

    return run
