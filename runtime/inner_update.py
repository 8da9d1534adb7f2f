"""The inner loop's parameter update: torch.optim's SGD and Adam (foreach) through their functional
forms, ``torch.optim.sgd.sgd`` and ``torch.optim.adam.adam``, the code the optimizers' ``step``
runs. Constructing a ``torch.optim`` optimizer imports ``torch._dynamo`` (``add_param_group`` is
wrapped in ``torch._disable_dynamo``), which stays resident for the rest of the process: 149 MiB
measured, most of what an adapted run needed beyond ``--no-adapt`` on a 3 MP photo (issue 27,
docs/benchmarks.md "Memory"). ``tests/test_adapt.py`` checks these against the optimizers, step by step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.optim.adam import adam
from torch.optim.sgd import sgd

Update = Callable[[Sequence[torch.Tensor]], None]
ADAM_BETAS = (0.9, 0.999)  # torch.optim.Adam's defaults
ADAM_EPS = 1e-8


def make_update(params: list[torch.Tensor], optimizer: str, lr: float) -> Update:
    """A function that moves ``params`` in place by one step of ``optimizer`` (``sgd``: no momentum;
    ``adam``: torch's default betas and eps) given their gradients, keeping Adam's state between calls."""
    if optimizer == "sgd":
        def sgd_step(grads: Sequence[torch.Tensor]) -> None:
            with torch.no_grad():
                sgd(params, list(grads), [None] * len(params), foreach=True, weight_decay=0.0, momentum=0.0, lr=lr,
                    dampening=0.0, nesterov=False, maximize=False)

        return sgd_step
    exp_avgs = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]
    exp_avg_sqs = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]
    steps = [torch.tensor(0.0, dtype=torch.float32) for _ in params]  # as torch.optim.Adam keeps them

    def adam_step(grads: Sequence[torch.Tensor]) -> None:
        with torch.no_grad():
            adam(params, list(grads), exp_avgs, exp_avg_sqs, [], steps, foreach=True, amsgrad=False,
                 beta1=ADAM_BETAS[0], beta2=ADAM_BETAS[1], lr=lr, weight_decay=0.0, eps=ADAM_EPS, maximize=False)

    return adam_step


def make_scaled_sgd(params: list[torch.Tensor], step_sizes: Sequence[torch.Tensor]) -> Update:
    """Plain SGD with a step size per element (Meta-SGD): θ ← θ − α ⊙ ∇L, ``step_sizes`` shaped as ``params``."""
    if len(step_sizes) != len(params) or any(a.shape != p.shape for a, p in zip(step_sizes, params)):
        raise ValueError("step sizes must match the adapted parameters one for one, shape for shape")
    alphas = [a.to(p.device, p.dtype) for a, p in zip(step_sizes, params)]

    def scaled_sgd_step(grads: Sequence[torch.Tensor]) -> None:
        with torch.no_grad():
            torch._foreach_addcmul_(params, alphas, list(grads), value=-1.0)

    return scaled_sgd_step
