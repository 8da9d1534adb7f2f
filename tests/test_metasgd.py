"""Meta-SGD (issue 28, third round): the per-element SGD step, the exact meta-gradient against
autograd's second order, a meta step on a task that wants a larger step, the checkpoint."""

import pytest
import torch

from conftest import random_tasks, tiny_meta_modules

from f2n.errors import WeightsError
from f2n.nets.masknet import MaskNet
from f2n.runtime.adapt import AdaptConfig, iter_adaptation
from f2n.runtime.adapt_params import InnerLoopVariant
from f2n.runtime.inner_update import make_scaled_sgd
from f2n.runtime.types import PatchBatch
from f2n.training.config import LossConfig
from f2n.training.maml import TaskBatch, meta_objective
from f2n.training.metasgd import adapted_subset, meta_gradients, meta_step, step_sizes
from f2n.weights.checkpoint import save_safetensors_atomic
from f2n.weights.metasgd import load_metasgd, save_metasgd

LOSSES = LossConfig(l1=1.0, lpips=0.0, gan=0.0, mask_reg=0.002, texture=0.5)


def _frozen_modules():
    modules = tiny_meta_modules()
    modules.sr.requires_grad_(False)
    return modules


def _log_alpha(modules, per_element: bool) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(2)
    out = {}
    for name, bias in adapted_subset(modules.sr).items():
        shape = bias.shape if per_element else ()
        out[name] = (torch.randn(shape, generator=generator, dtype=torch.float64) * 0.3 - 1).requires_grad_()
    return out


def test_scaled_sgd_is_theta_minus_alpha_times_gradient() -> None:
    generator = torch.Generator().manual_seed(0)
    params = [torch.randn(5, generator=generator), torch.randn(2, 3, generator=generator)]
    before = [p.clone() for p in params]
    alphas = [torch.rand(5, generator=generator), torch.rand(2, 3, generator=generator)]
    grads = [torch.randn(5, generator=generator), torch.randn(2, 3, generator=generator)]
    make_scaled_sgd(params, alphas)(grads)
    for p, b, a, g in zip(params, before, alphas, grads):
        expected = [bi - ai * gi for bi, ai, gi in zip(b.flatten().tolist(), a.flatten().tolist(), g.flatten().tolist())]
        assert p.flatten().tolist() == pytest.approx(expected, rel=1e-6, abs=1e-7)
    with pytest.raises(ValueError):
        make_scaled_sgd(params, alphas[:1])


def test_adaptation_with_step_sizes_takes_the_scaled_step() -> None:
    """The runtime's loop with a variant's step sizes: one step is b − α ⊙ ∇L, the gradient
    taken independently by autograd on a plain module; the weights stay θ's."""
    sr = tiny_meta_modules().sr.float()
    generator = torch.Generator().manual_seed(3)
    patches = PatchBatch(torch.rand(2, 3, 4, 4, generator=generator), torch.rand(2, 3, 16, 16, generator=generator),
                         torch.rand(2, 1, 16, 16, generator=generator))
    alphas = {n: torch.rand(p.shape, generator=generator) for n, p in sr.named_parameters() if n.endswith(".bias")}
    config = AdaptConfig(steps=1, params="bias", holdout=0.0)
    step = next(iter_adaptation(sr, patches, config, variant=InnerLoopVariant(step_sizes=alphas)))
    loss = (patches.weight * (sr(patches.lq) - patches.target).abs()).mean()
    names = list(alphas)
    grads = torch.autograd.grad(loss, [dict(sr.named_parameters())[n] for n in names])
    for name, grad in zip(names, grads):
        expected = dict(sr.named_parameters())[name].detach() - alphas[name] * grad
        torch.testing.assert_close(step.weights[name], expected, rtol=1e-5, atol=1e-6)
    weight = next(n for n, _ in sr.named_parameters() if n.endswith(".weight"))
    assert torch.equal(step.weights[weight], dict(sr.named_parameters())[weight].detach())


@pytest.mark.parametrize("per_element", [False, True])
def test_meta_gradient_equals_second_order_autograd(per_element: bool) -> None:
    """The JVP route (no double backward) gives what differentiating through the inner step does."""
    modules = _frozen_modules()
    tasks = random_tasks()
    log_alpha = _log_alpha(modules, per_element)
    mask_params = dict(modules.masknet.named_parameters())
    _, alpha_grads, mask_grads = meta_gradients(modules.sr, modules.masknet, log_alpha, tasks, LOSSES)

    biases = adapted_subset(modules.sr)
    reference = meta_objective(modules, biases, mask_params, tasks, LOSSES, step_sizes(log_alpha, biases),
                               first_order=False)
    expected = torch.autograd.grad(reference.loss, [*log_alpha.values(), *mask_params.values()])
    for got, want in zip([*alpha_grads, *mask_grads], expected):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-9)
    assert any(float(g.abs().max()) > 1e-6 for g in mask_grads)  # the MaskNet does learn through the inner step


def test_meta_step_grows_alpha_when_a_larger_step_is_better() -> None:
    """A task whose natural pair is the face pair itself, far from f: a single SGD step of a tiny α
    barely moves toward it, so the outer loss falls as α grows and one meta step must raise α."""
    modules = _frozen_modules()
    generator = torch.Generator().manual_seed(4)
    lq = torch.rand(1, 3, 4, 4, generator=generator, dtype=torch.float64)
    target = (modules.sr(lq) + 0.3).detach()  # a brighter f is better: the biases can do that
    tasks = TaskBatch(lq, target, lq, target)
    losses = LossConfig(l1=1.0, lpips=0.0, gan=0.0, mask_reg=0.0)
    log_alpha = {n: torch.tensor(-6.0, dtype=torch.float64, requires_grad=True) for n in adapted_subset(modules.sr)}
    before = {n: float(v) for n, v in log_alpha.items()}
    loss_at = lambda: float(meta_objective(modules, adapted_subset(modules.sr), dict(modules.masknet.named_parameters()),  # noqa: E731
                                           tasks, losses, step_sizes(log_alpha, adapted_subset(modules.sr)),
                                           first_order=True).loss)
    start = loss_at()
    optimizer = torch.optim.SGD(list(log_alpha.values()), lr=10.0)
    meta_step(modules.sr, modules.masknet, log_alpha, optimizer, tasks, losses)
    assert sum(float(v) - before[n] for n, v in log_alpha.items()) > 0
    assert loss_at() < start


def test_checkpoint_round_trips(tmp_path) -> None:
    masknet = MaskNet(num_feat=4, num_layers=3)
    alphas = {"conv_first.bias": torch.rand(64) + 0.1, "body.0.rdb1.conv1.bias": torch.full((32,), 0.02)}
    path = save_metasgd(tmp_path / "m.safetensors", alphas, masknet.state_dict(), {"steps_done": 7})
    loaded = load_metasgd(path)
    assert loaded.record == {"steps_done": 7}
    assert set(loaded.step_sizes) == set(alphas)
    for name, value in alphas.items():
        assert torch.equal(loaded.step_sizes[name], value)
    x = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    assert torch.equal(loaded.masknet(*x), masknet.eval()(*x))


def test_checkpoint_refuses_non_positive_steps_and_other_files(tmp_path) -> None:
    masknet = MaskNet(num_feat=4, num_layers=3).state_dict()
    bad = save_metasgd(tmp_path / "bad.safetensors", {"conv_first.bias": torch.zeros(4)}, masknet, {})
    with pytest.raises(WeightsError, match="not all > 0"):
        load_metasgd(bad)
    other = save_safetensors_atomic(tmp_path / "other.safetensors", masknet, {})
    with pytest.raises(WeightsError, match="f2n_format"):
        load_metasgd(other)
