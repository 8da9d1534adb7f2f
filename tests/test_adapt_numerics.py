"""Issue 26: what the inner loop keeps alive and how it compares losses. The step function's
cache must not keep a model (and its compiled graphs) alive after the caller drops it; a bf16
held-out loss must beat the base one by more than bf16's rounding; held-out losses are computed
in the precision the steps run in (fp32 on a GPU without native bf16)."""

import gc
import importlib
import weakref

import pytest
import torch
from conftest import TinyRRDBNet

from f2n.runtime.adapt import AdaptConfig, adapt, guard_decision, improves
from f2n.runtime.types import PatchBatch

adapt_module = importlib.import_module("f2n.runtime.adapt")  # f2n.runtime.adapt is also a function


def _patches(count: int = 4) -> PatchBatch:
    generator = torch.Generator().manual_seed(0)
    return PatchBatch(torch.rand(count, 3, 16, 16, generator=generator),
                      torch.rand(count, 3, 64, 64, generator=generator),
                      torch.ones(count, 1, 64, 64))


def test_adapting_keeps_no_model_alive(tiny_rrdbnet: TinyRRDBNet) -> None:
    model = tiny_rrdbnet()
    adapt(model, _patches(), AdaptConfig(steps=1, compile=False))
    dropped = weakref.ref(model)
    del model
    gc.collect()
    assert dropped() is None, "the step function's cache still holds the model"


def test_a_copied_model_gets_its_own_step_function(tiny_rrdbnet: TinyRRDBNet) -> None:
    import copy

    model = tiny_rrdbnet()
    first = adapt_module._loss_and_grads_fn(model, "fp32", False)
    assert adapt_module._loss_and_grads_fn(model, "fp32", False) is first  # reused across photos
    twin = copy.deepcopy(model)
    assert adapt_module._loss_and_grads_fn(twin, "fp32", False) is not first


def test_a_bf16_improvement_must_exceed_its_rounding() -> None:
    base = 0.0500
    within_rounding = base * (1 - 2.0 ** -10)  # bf16 outputs move a loss this much by rounding alone
    assert guard_decision(base, within_rounding, "fp32")[0]
    assert not guard_decision(base, within_rounding, "bf16")[0]
    assert guard_decision(base, base * 0.99, "bf16")[0]
    assert not improves(base, base, "fp32")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_held_out_losses_fall_back_to_fp32_before_ampere(tiny_rrdbnet: TinyRRDBNet,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))  # a T4, say
    model = tiny_rrdbnet().cuda()
    held = _patches(2)
    weights = {name: p.detach() for name, p in model.named_parameters()}
    bf16 = adapt_module._held_out_loss_fn(model, held, AdaptConfig(device="cuda", precision="bf16"))(weights)
    fp32 = adapt_module._held_out_loss_fn(model, held, AdaptConfig(device="cuda", precision="fp32"))(weights)
    assert bf16 == fp32
