"""One meta-training step of MetaF2N (Alg. 1).

For each task: MaskNet weighs the face pair, one inner gradient step adapts θ on the
face (θ_n = θ − α∇L_in), and the adapted network is scored on a natural image of the
same degradation. The outer loss reaches θ and θ_m through the inner step (true
second-order gradients unless ``first_order``); the discriminator is updated in the
outer loop only.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from f2n.gan_loss import discriminator_gan_loss, generator_gan_loss
from f2n.inner_loop import masked_l1, masknet_lq_input
from f2n.texture_loss import PATCH, random_directions, texture_distance
from f2n.training.config import LossConfig, OptimConfig
from f2n.training.losses import mask_regularisation, self_similarity_loss

Params = Mapping[str, torch.Tensor]
GradientReducer = Callable[[Sequence[torch.Tensor]], None]  # averages .grad of the given params across workers


@dataclass(frozen=True)
class TaskBatch:
    """T tasks; task t's face pair and natural pair share one degradation.
    Face: LQ (T, 3, p/4, p/4) and target (T, 3, p, p); natural: LQ (T, 3, q/4, q/4), HQ (T, 3, q, q)."""

    face_lq: torch.Tensor
    face_target: torch.Tensor
    natural_lq: torch.Tensor
    natural_hq: torch.Tensor

    def __len__(self) -> int:
        return int(self.face_lq.shape[0])

    def select(self, index: slice) -> "TaskBatch":
        return TaskBatch(self.face_lq[index], self.face_target[index], self.natural_lq[index], self.natural_hq[index])

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "TaskBatch":
        return TaskBatch(*(t.to(device=device, dtype=dtype) for t in
                           (self.face_lq, self.face_target, self.natural_lq, self.natural_hq)))


@dataclass(frozen=True)
class MetaModules:
    """The networks of meta-training. ``disc`` and ``lpips`` may be None when their loss
    weight is 0. ``sr`` and ``masknet`` are called functionally with explicit params."""

    sr: nn.Module
    masknet: nn.Module
    disc: nn.Module | None = None
    lpips: nn.Module | None = None


@dataclass(frozen=True)
class MetaOptimizers:
    sr: torch.optim.Optimizer
    masknet: torch.optim.Optimizer
    disc: torch.optim.Optimizer | None = None


@dataclass(frozen=True)
class OuterResult:
    loss: torch.Tensor  # 0-d, differentiable w.r.t. θ and θ_m
    adapted_output: torch.Tensor  # f(natural_lq; θ_n) per task, (T, 3, q, q)
    terms: dict[str, float]  # each weighted term, for logging
    adapted: tuple[dict[str, torch.Tensor], ...] = ()  # θ_n per task (in the graph): Meta-SGD's JVP needs ∂L/∂θ_n


def face_weight(masknet: nn.Module, mask_params: Params, face_lq: torch.Tensor, face_target: torch.Tensor) -> torch.Tensor:
    """m = MaskNet(bicubic x4 of the LQ face, target)."""
    upsampled = masknet_lq_input(face_lq, face_target.shape[-2:])
    return functional_call(masknet, dict(mask_params), (upsampled, face_target))


def inner_adapt(
    sr: nn.Module,
    params: Params,
    face_lq: torch.Tensor,
    face_target: torch.Tensor,
    weight: torch.Tensor,
    alpha: float | Params,
    *,
    create_graph: bool,
) -> dict[str, torch.Tensor]:
    """θ_n = θ − α∇_θ mean(m · |f(lq; θ) − target|), α one number or, by name, one per element
    (Meta-SGD). With ``create_graph`` the step stays differentiable (second order); without it
    the gradient is a constant (first order)."""
    names = list(params)
    loss = masked_l1(functional_call(sr, dict(params), (face_lq,)), face_target, weight)
    # retain_graph: the MaskNet output is used again by the outer loss (‖m − 1‖).
    grads = torch.autograd.grad(loss, [params[n] for n in names], create_graph=create_graph, retain_graph=True)
    step = (lambda n: alpha[n]) if isinstance(alpha, Mapping) else (lambda n: alpha)
    return {n: params[n] - step(n) * g for n, g in zip(names, grads)}


def meta_objective(
    modules: MetaModules,
    sr_params: Params,
    mask_params: Params,
    tasks: TaskBatch,
    losses: LossConfig,
    alpha: float | Params,
    *,
    first_order: bool = False,
) -> OuterResult:
    """Mean outer loss over the tasks: λ1·L1 + λ2·LPIPS + λ3·GAN + λ4·‖m − 1‖₂ (+ λ5·self-similarity
    + λ6·the high-band sliced Wasserstein texture term),
    all on f(natural_lq; θ_n). Every term is a mean over tasks, so splitting the tasks over
    workers and averaging their gradients gives the gradient of the whole batch."""
    outputs, weights, adapted_params = [], [], []
    for t in range(len(tasks)):
        one = tasks.select(slice(t, t + 1))
        weight = face_weight(modules.masknet, mask_params, one.face_lq, one.face_target)
        adapted = inner_adapt(modules.sr, sr_params, one.face_lq, one.face_target, weight, alpha,
                              create_graph=not first_order)
        outputs.append(functional_call(modules.sr, adapted, (one.natural_lq,)))
        weights.append(weight)
        adapted_params.append(adapted)
    output, weight = torch.cat(outputs), torch.cat(weights)
    hq = tasks.natural_hq

    terms: dict[str, torch.Tensor] = {"l1": losses.l1 * F.l1_loss(output, hq)}
    if losses.lpips:
        if modules.lpips is None:
            raise ValueError("lambda_lpips > 0 needs an LPIPS module")
        terms["lpips"] = losses.lpips * modules.lpips(output * 2 - 1, hq * 2 - 1).mean()
    if losses.gan:
        if modules.disc is None:
            raise ValueError("lambda_gan > 0 needs a discriminator")
        terms["gan"] = losses.gan * generator_gan_loss(modules.disc(output))
    if losses.mask_reg:
        terms["mask_reg"] = losses.mask_reg * mask_regularisation(weight)
    if losses.self_similarity:
        terms["self_similarity"] = losses.self_similarity * self_similarity_loss(
            output, hq, patch=losses.ss_patch, window=losses.ss_window, h=losses.ss_h, threshold=losses.ss_threshold
        )
    if losses.texture:
        directions = random_directions(3 * PATCH ** 2, seed=0).to(output.device)
        terms["texture"] = losses.texture * texture_distance(output, hq, directions, losses.texture_sigma)
    total = torch.stack(list(terms.values())).sum()
    return OuterResult(total, output, {k: float(v.detach()) for k, v in terms.items()}, tuple(adapted_params))


def meta_gradients(
    modules: MetaModules, tasks: TaskBatch, losses: LossConfig, alpha: float, *, first_order: bool = False
) -> tuple[OuterResult, list[torch.Tensor], list[torch.Tensor]]:
    """Outer loss and its gradients w.r.t. the parameters of ``sr`` and ``masknet``
    (in ``named_parameters`` order). The discriminator is held fixed."""
    sr_params = dict(modules.sr.named_parameters())
    mask_params = dict(modules.masknet.named_parameters())
    result = meta_objective(modules, sr_params, mask_params, tasks, losses, alpha, first_order=first_order)
    leaves = [*sr_params.values(), *mask_params.values()]
    grads = torch.autograd.grad(result.loss, leaves, allow_unused=True)
    # First order with λ4 = 0 leaves θ_m out of the graph: its gradient is then zero.
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(leaves, grads)]
    return result, grads[: len(sr_params)], grads[len(sr_params):]


def train_step(
    modules: MetaModules,
    optimizers: MetaOptimizers,
    tasks: TaskBatch,
    losses: LossConfig,
    optim: OptimConfig,
    reduce_gradients: GradientReducer,
) -> dict[str, float]:
    """Update θ and θ_m by the meta-gradient, then D on (natural HQ, adapted output).
    Returns the logged scalars."""
    if modules.disc is not None:
        modules.disc.requires_grad_(False)
    result, sr_grads, mask_grads = meta_gradients(modules, tasks, losses, optim.alpha, first_order=optim.first_order)
    _apply(optimizers.sr, list(modules.sr.parameters()), sr_grads, reduce_gradients)
    _apply(optimizers.masknet, list(modules.masknet.parameters()), mask_grads, reduce_gradients)
    logs = {"loss": float(result.loss.detach()), **result.terms}

    if losses.gan and modules.disc is not None and optimizers.disc is not None:
        modules.disc.requires_grad_(True)
        disc_params = list(modules.disc.parameters())
        disc_loss = discriminator_gan_loss(modules.disc(tasks.natural_hq), modules.disc(result.adapted_output.detach()))
        disc_grads = torch.autograd.grad(disc_loss, disc_params)
        _apply(optimizers.disc, disc_params, list(disc_grads), reduce_gradients)
        logs["disc"] = float(disc_loss.detach())
    return logs


def _apply(
    optimizer: torch.optim.Optimizer,
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    reduce_gradients: GradientReducer,
) -> None:
    for param, grad in zip(params, grads):
        param.grad = grad.detach()
    reduce_gradients(params)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
