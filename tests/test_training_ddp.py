"""Data parallelism: 2 gloo workers with 2 tasks each make the same update as one
process with the 4 tasks (θ, θ_m and D), in float64."""

import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import tiny_meta_modules

from f2n.training.config import LossConfig, OptimConfig
from f2n.training.distributed import average_gradients
from f2n.training.maml import MetaModules, MetaOptimizers, TaskBatch, train_step

LOSSES = LossConfig(l1=1.0, lpips=0.0, gan=0.1, mask_reg=0.002)
OPTIM = OptimConfig(alpha=0.1, lr_sr=1e-3, lr_mask=1e-3, lr_disc=1e-3)
TASKS = 4


def _setup() -> tuple[MetaModules, MetaOptimizers]:
    modules = tiny_meta_modules(with_discriminator=True)
    return modules, MetaOptimizers(_adam(modules.sr, OPTIM.lr_sr), _adam(modules.masknet, OPTIM.lr_mask),
                                   _adam(modules.disc, OPTIM.lr_disc))


def _adam(module: torch.nn.Module, lr: float) -> torch.optim.Adam:
    return torch.optim.Adam(module.parameters(), lr=lr, betas=OPTIM.betas)


def _tasks() -> TaskBatch:
    generator = torch.Generator().manual_seed(1)

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(TASKS, *shape, generator=generator, dtype=torch.float64)

    return TaskBatch(rand(3, 4, 4), rand(3, 16, 16), rand(3, 4, 4), rand(3, 16, 16))


def _state(modules: MetaModules) -> dict[str, torch.Tensor]:
    return {f"{name}.{key}": value.detach().clone() for name in ("sr", "masknet", "disc")
            for key, value in getattr(modules, name).state_dict().items()}


def _worker(rank: int, world: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        modules, optimizers = _setup()
        share = TASKS // world
        train_step(modules, optimizers, _tasks().select(slice(rank * share, (rank + 1) * share)), LOSSES, OPTIM,
                   average_gradients)
        if rank == 0:
            torch.save(_state(modules), out)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _single(tasks: TaskBatch) -> dict[str, torch.Tensor]:
    modules, optimizers = _setup()
    train_step(modules, optimizers, tasks, LOSSES, OPTIM, lambda _: None)
    return _state(modules)


@pytest.mark.slow  # two spawned interpreters importing torch: ~10-20 s on the shared CPU
def test_two_gloo_workers_equal_one_process_with_the_doubled_batch(tmp_path: Path) -> None:
    out = tmp_path / "rank0.pt"
    mp.spawn(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    parallel = torch.load(out, weights_only=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        whole = _single(_tasks())
        half = _single(_tasks().select(slice(0, TASKS // 2)))  # negative control
    finally:
        torch.set_num_threads(threads)
    initial = _state(_setup()[0])
    assert any(not torch.equal(whole[k], initial[k]) for k in whole if k.startswith("disc."))
    for key, value in whole.items():
        torch.testing.assert_close(parallel[key], value, rtol=1e-9, atol=1e-12, msg=key)
    assert any(not torch.allclose(half[k], whole[k], rtol=1e-6, atol=1e-9) for k in whole)
