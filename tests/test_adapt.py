"""Adaptation (MetaF2N Alg. 2): one step against a hand-computed SGD step, and the
inner loop improving a synthetic photo's face region with an oracle target."""

import copy
import importlib
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch
from conftest import TinyRRDBNet

from f2n.errors import ConfigError
from f2n.export.torch_engine import TorchEngine
from f2n.runtime.adapt import AdaptConfig, adapt, iter_adaptation, masked_l1
from f2n.runtime.psnr import psnr
from f2n.runtime.tiling import tiled_upscale
from f2n.runtime.types import PatchBatch


def random_patches(seed: int = 1, count: int = 2, size: int = 8) -> PatchBatch:
    g = torch.Generator().manual_seed(seed)
    return PatchBatch(
        lq=torch.rand(count, 3, size, size, generator=g),
        target=torch.rand(count, 3, size * 4, size * 4, generator=g),
        weight=torch.rand(count, 1, size * 4, size * 4, generator=g) * 2,  # non-uniform: a wrong mask shows
    )


@pytest.mark.parametrize("lr", [1e-2, 0.5])
def test_one_step_equals_hand_computed_sgd(tiny_rrdbnet: TinyRRDBNet, lr: float) -> None:
    model, patches = tiny_rrdbnet(), random_patches()
    before = copy.deepcopy(model.state_dict())

    reference = copy.deepcopy(model)
    out = reference(patches.lq)
    loss = (patches.weight * (out - patches.target).abs()).mean()
    loss.backward()
    expected = {name: p.detach() - lr * p.grad for name, p in reference.named_parameters()}

    result = adapt(model, patches, AdaptConfig(holdout=0, params="all", steps=1, lr=lr, optimizer="sgd"))
    assert "delta" not in vars(result)  # θ_n − θ_0 is only computed when asked for
    assert result.losses[0] == pytest.approx(loss.item(), abs=1e-6)
    for name, value in expected.items():
        torch.testing.assert_close(result.weights[name], value, atol=1e-5, rtol=0)
        torch.testing.assert_close(result.delta[name], value - before[name], atol=1e-5, rtol=0)
    for name, value in model.state_dict().items():  # the base network is never modified
        assert torch.equal(value, before[name])


def test_adam_moves_every_weight_by_about_lr(tiny_rrdbnet: TinyRRDBNet) -> None:
    """Adam's first step is lr · sign(grad) (bias-corrected); checks the option is wired."""
    result = adapt(tiny_rrdbnet(), random_patches(), AdaptConfig(holdout=0, params="all", steps=1, lr=1e-3, optimizer="adam"))
    magnitudes = torch.cat([d.abs().flatten() for d in result.delta.values()])
    assert float(magnitudes.max()) == pytest.approx(1e-3, rel=1e-3)


def test_iter_adaptation_snapshots_match_adapt(tiny_rrdbnet: TinyRRDBNet) -> None:
    model, patches, config = tiny_rrdbnet(), random_patches(), AdaptConfig(holdout=0, params="all", steps=4, lr=0.1, optimizer="sgd")
    snapshots = {s.index: {k: v.clone() for k, v in s.weights.items()} for s in iter_adaptation(model, patches, config)}
    final = adapt(model, patches, config)
    assert sorted(snapshots) == [1, 2, 3, 4]
    for name, value in final.weights.items():
        torch.testing.assert_close(snapshots[4][name], value)
    assert masked_l1(model, snapshots[4], patches.lq, patches.target, patches.weight) < final.losses[0]


def _synthetic_photo() -> tuple[np.ndarray, np.ndarray, tuple[slice, slice]]:
    """GT (96 x 96 HR), its x4-degraded LQ and the LR "face" region."""
    rng = np.random.default_rng(7)
    gt = cv2.resize(rng.random((12, 12, 3)).astype(np.float32), (96, 96), interpolation=cv2.INTER_CUBIC)
    gt = np.clip(gt, 0, 1)
    lq = cv2.resize(cv2.GaussianBlur(gt, (0, 0), 1.5), (24, 24), interpolation=cv2.INTER_AREA)
    return gt, lq, (slice(4, 20), slice(4, 20))


def test_oracle_adaptation_improves_the_face_region(tiny_rrdbnet: TinyRRDBNet) -> None:
    gt, lq, (rows, cols) = _synthetic_photo()
    hr_rows, hr_cols = slice(rows.start * 4, rows.stop * 4), slice(cols.start * 4, cols.stop * 4)
    patches = PatchBatch(
        lq=torch.from_numpy(lq[rows, cols]).permute(2, 0, 1)[None].contiguous(),
        target=torch.from_numpy(gt[hr_rows, hr_cols]).permute(2, 0, 1)[None].contiguous(),
        weight=torch.ones(1, 1, 64, 64),
    )
    model = tiny_rrdbnet()
    result = adapt(model, patches, AdaptConfig(holdout=0, params="all", steps=20, lr=1e-2, optimizer="adam"))
    engine = TorchEngine(model)
    base = tiled_upscale(engine, lq)
    engine.set_weights(result.weights)
    adapted = tiled_upscale(engine, lq)

    adapted_loss = float(masked_l1(model, result.weights, patches.lq, patches.target, patches.weight))
    assert adapted_loss < 0.7 * result.losses[0]
    assert psnr(adapted[hr_rows, hr_cols], gt[hr_rows, hr_cols]) > psnr(base[hr_rows, hr_cols], gt[hr_rows, hr_cols]) + 3


def test_mask_zero_region_does_not_pull(tiny_rrdbnet: TinyRRDBNet) -> None:
    """Target garbage where the mask is 0 must not change anything: same θ_n as a
    target that is correct there."""
    patches = random_patches(count=1)
    mask = torch.ones_like(patches.weight)
    mask[..., :16, :] = 0
    garbage = patches.target.clone()
    garbage[..., :16, :] = 1 - garbage[..., :16, :]
    config = AdaptConfig(holdout=0, params="all", steps=3, lr=0.3, optimizer="sgd")
    clean = adapt(tiny_rrdbnet(), PatchBatch(patches.lq, patches.target, mask), config)
    dirty = adapt(tiny_rrdbnet(), PatchBatch(patches.lq, garbage, mask), config)
    for name in clean.weights:
        torch.testing.assert_close(clean.weights[name], dirty.weights[name])
    unmasked = adapt(tiny_rrdbnet(), PatchBatch(patches.lq, garbage, torch.ones_like(mask)), config)
    assert not torch.allclose(unmasked.weights["conv_last.weight"], clean.weights["conv_last.weight"])


def test_cpu_bf16_autocast_tracks_fp32(tiny_rrdbnet: TinyRRDBNet) -> None:
    patches = random_patches()
    fp32 = adapt(tiny_rrdbnet(), patches, AdaptConfig(holdout=0, params="all", steps=3, lr=0.1, optimizer="sgd"))
    bf16 = adapt(tiny_rrdbnet(), patches, AdaptConfig(holdout=0, params="all", steps=3, lr=0.1, optimizer="sgd", precision="bf16"))
    np.testing.assert_allclose(bf16.losses, fp32.losses, rtol=2e-2)


@pytest.mark.parametrize(
    "kwargs", [{"steps": -1}, {"lr": 0.0}, {"optimizer": "rmsprop"}, {"precision": "fp16"}]
)
def test_bad_config(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        AdaptConfig(**kwargs)


def test_zero_steps_returns_the_base_weights(tiny_rrdbnet: TinyRRDBNet) -> None:
    model = tiny_rrdbnet()
    result = adapt(model, random_patches(), AdaptConfig(holdout=0, params="all", steps=0))
    assert result.losses == () and all(float(d.abs().max()) == 0 for d in result.delta.values())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="compiled bf16 adaptation needs a CUDA device")
def test_compiled_bf16_on_cuda_matches_eager_and_does_not_recompile(tiny_rrdbnet: TinyRRDBNet) -> None:
    from torch._dynamo.utils import counters

    model, patches = tiny_rrdbnet().cuda(), random_patches()
    eager = adapt(model, patches, AdaptConfig(holdout=0, params="all", steps=3, lr=0.1, optimizer="sgd", device="cuda", compile=False))
    compiled = adapt(model, patches, AdaptConfig(holdout=0, params="all", steps=3, lr=0.1, optimizer="sgd", device="cuda", precision="bf16", compile=True))
    np.testing.assert_allclose(compiled.losses, eager.losses, rtol=3e-2)
    frames = counters["stats"]["unique_graphs"]
    adapt(model, random_patches(seed=5), AdaptConfig(holdout=0, params="all", steps=3, lr=0.02, optimizer="sgd", device="cuda", precision="bf16", compile=True))
    assert counters["stats"]["unique_graphs"] == frames  # new photo, new lr: no new graph


def test_compiled_step_compiles_once_for_every_face_count(tiny_rrdbnet: TinyRRDBNet,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Photos with 1, 2, 3 and 5 faces send 16, 32, 48 and 80 patches: after the first
    count makes the patch dimension dynamic, no photo compiles a new graph, and the
    compiled losses equal eager ones. Counted with a counting backend in place of
    Inductor (the guards that decide recompiles are Dynamo's, whichever backend)."""
    from torch._dynamo.testing import CompileCounterWithBackend

    adapt_module = importlib.import_module("f2n.runtime.adapt")  # f2n.runtime.adapt is also the function's name
    counter = CompileCounterWithBackend("eager")
    monkeypatch.setattr(adapt_module, "COMPILE_BACKEND", counter)
    torch._dynamo.reset()
    model = tiny_rrdbnet()
    # all pairs trained (no held-out split): with it, one face trains 12 pairs and Dynamo's conv
    # specialises batches below 16 once, a second graph per process (docs/adaptation.md)
    config = AdaptConfig(steps=1, lr=0.1, optimizer="sgd", compile=True, holdout=0)
    for faces in (1, 2, 3, 5):
        patches = random_patches(seed=faces, count=16 * faces, size=4)
        compiled = adapt(model, patches, config)
        eager = adapt(model, patches, AdaptConfig(steps=1, lr=0.1, optimizer="sgd", compile=False, holdout=0))
        np.testing.assert_allclose(compiled.losses, eager.losses, rtol=1e-5)
    assert counter.frame_count == 1, f"{counter.frame_count} graphs compiled for 4 face counts, expected 1"


@pytest.mark.parametrize(
    ("capability", "expected"), [((7, 5), "fp32"), ((7, 0), "fp32"), ((8, 0), "bf16"), ((9, 0), "bf16")]
)
def test_bf16_adaptation_falls_back_to_fp32_before_ampere(capability: tuple[int, int], expected: str) -> None:
    from f2n.runtime.adapt import adaptation_precision

    assert adaptation_precision("bf16", "cuda", capability) == expected
    assert adaptation_precision("fp32", "cuda", capability) == "fp32"
    assert adaptation_precision("bf16", "cpu", None) == "bf16"  # CPU autocast bf16 is native or fast enough


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_the_inner_update_is_torch_optims_step(optimizer: str) -> None:
    """The inner loop moves its parameters through torch.optim's functional SGD/Adam (constructing
    an optimizer would import torch._dynamo, ~150 MiB resident): the same numbers as the optimizers."""
    from f2n.runtime.inner_update import make_update

    generator = torch.Generator().manual_seed(0)
    start = [torch.randn(5, 3, generator=generator), torch.randn(7, generator=generator)]
    ours = [p.clone().requires_grad_() for p in start]
    theirs = [p.clone().requires_grad_() for p in start]
    update = make_update(ours, optimizer, 1e-2)
    reference = (torch.optim.SGD(theirs, lr=1e-2, foreach=True) if optimizer == "sgd"
                 else torch.optim.Adam(theirs, lr=1e-2, foreach=True))
    for _ in range(4):
        grads = [torch.randn(p.shape, generator=generator) for p in start]
        update(grads)
        for param, grad in zip(theirs, grads):
            param.grad = grad
        reference.step()
        for a, b in zip(ours, theirs):
            assert torch.equal(a, b)
    assert not torch.equal(ours[0], start[0])


@pytest.mark.parametrize("params", ["bias", "all"])
def test_the_eager_step_gives_torch_funcs_gradients(tiny_rrdbnet: TinyRRDBNet, monkeypatch: pytest.MonkeyPatch,
                                                    params: str) -> None:
    """Eager steps take their gradients from torch.autograd.grad, compiled ones from torch.func's
    grad_and_value (here compiled with Dynamo's eager backend, so only the gradient code differs)."""
    monkeypatch.setattr(importlib.import_module("f2n.runtime.adapt"), "COMPILE_BACKEND", "eager")
    config = AdaptConfig(steps=2, lr=0.1, optimizer="sgd", holdout=0, params=params)
    patches = random_patches(count=3)
    eager = adapt(tiny_rrdbnet(), patches, replace(config, compile=False))
    through_func = adapt(tiny_rrdbnet(), patches, replace(config, compile=True))
    moved = [name for name in eager.weights if not torch.equal(eager.weights[name], eager.base[name])]
    assert moved
    for name in eager.weights:
        torch.testing.assert_close(eager.weights[name], through_func.weights[name], atol=1e-6, rtol=1e-5)


def test_an_eager_adaptation_imports_no_dynamo(tmp_path) -> None:
    """torch.func's transforms and torch.optim's constructors import torch._dynamo, which stays
    resident (149 MiB): most of what an adapted run peaked above --no-adapt (issue 27, memory)."""
    import subprocess
    import sys

    code = ("import sys, torch\n"
            "from f2n.nets import RRDBNet\n"
            "from f2n.runtime.adapt import AdaptConfig, adapt\n"
            "from f2n.runtime.types import PatchBatch\n"
            "g = torch.Generator().manual_seed(0)\n"
            "pairs = PatchBatch(torch.rand(4, 3, 8, 8, generator=g), torch.rand(4, 3, 32, 32, generator=g), "
            "torch.ones(4, 1, 32, 32))\n"
            "for optimizer in ('adam', 'sgd'):\n"
            "    adapt(RRDBNet(num_block=1, num_feat=8, num_grow_ch=4), pairs, AdaptConfig(steps=2, optimizer=optimizer))\n"
            "print('torch._dynamo' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
