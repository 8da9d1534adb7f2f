"""The meta-gradient of MetaF2N's Alg. 1 against finite differences (float64, tiny nets)."""

import pytest
import torch

from conftest import random_tasks, tiny_meta_modules

from f2n.training.config import LossConfig
from f2n.training.maml import MetaModules, TaskBatch, meta_gradients, meta_objective

ALPHA = 0.5  # large, so that the second-order terms are far above the finite-difference error
LOSSES = LossConfig(l1=1.0, lpips=0.0, gan=0.0, mask_reg=0.002, self_similarity=0.1)


def _loss_at(modules: MetaModules, tasks: TaskBatch, step: float, directions: dict[str, torch.Tensor]) -> float:
    sr = {n: p.detach() + step * directions.get("sr." + n, 0) for n, p in modules.sr.named_parameters()}
    mask = {n: p.detach() + step * directions.get("mask." + n, 0) for n, p in modules.masknet.named_parameters()}
    for tensor in (*sr.values(), *mask.values()):
        tensor.requires_grad_(True)  # the inner step differentiates w.r.t. θ
    return float(meta_objective(modules, sr, mask, tasks, LOSSES, ALPHA).loss.detach())


def _directional(modules: MetaModules, tasks: TaskBatch, *, first_order: bool) -> dict[str, tuple[float, float]]:
    """Per parameter group, θ ("sr") and θ_m ("mask"): (gradient · d, central finite
    difference along d) for a random direction d over that group."""
    _, sr_grads, mask_grads = meta_gradients(modules, tasks, LOSSES, ALPHA, first_order=first_order)
    generator = torch.Generator().manual_seed(2)
    result = {}
    for which, module, grads in (("sr", modules.sr, sr_grads), ("mask", modules.masknet, mask_grads)):
        directions = {f"{which}.{n}": torch.randn(p.shape, generator=generator, dtype=p.dtype)
                      for n, p in module.named_parameters()}
        analytic = sum(float((g * d).sum()) for g, d in zip(grads, directions.values()))
        eps = 1e-6
        numeric = (_loss_at(modules, tasks, eps, directions) - _loss_at(modules, tasks, -eps, directions)) / (2 * eps)
        result[which] = (analytic, numeric)
    return result


def test_second_order_meta_gradient_matches_finite_differences() -> None:
    for which, (analytic, numeric) in _directional(tiny_meta_modules(), random_tasks(), first_order=False).items():
        assert abs(numeric) > 1e-4, f"{which}: direction too flat to tell anything"
        assert analytic == pytest.approx(numeric, rel=1e-5), which


def test_first_order_gradient_misses_the_second_order_terms() -> None:
    """Negative control: the finite-difference check above can fail."""
    for which, (analytic, numeric) in _directional(tiny_meta_modules(), random_tasks(), first_order=True).items():
        assert abs(analytic - numeric) > 1e-3 * abs(numeric), which
