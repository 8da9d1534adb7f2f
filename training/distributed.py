"""Data parallelism for meta-training, started by ``torchrun`` (gloo on CPU, nccl on GPU).

The meta-gradient comes from ``torch.autograd.grad`` through an inner step, which
``DistributedDataParallel``'s backward hooks do not see; so the gradients are averaged
explicitly after each step's gradient computation. Each worker takes its own slice of
the step's tasks; every loss is a mean over tasks, so the average of the workers'
gradients is the gradient of the whole batch.
"""

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_from_env(device: str = "auto") -> DistContext:
    """Join the process group that ``torchrun`` describes in the environment
    (WORLD_SIZE > 1), else run alone."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    target = torch.device(device, local_rank) if device == "cuda" else torch.device(device)
    if target.type == "cuda":
        torch.cuda.set_device(target)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if target.type == "cuda" else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return DistContext(rank, dist.get_world_size() if dist.is_initialized() else 1, target)


def average_gradients(params: Sequence[torch.Tensor]) -> None:
    """Replace each ``.grad`` by its mean over the workers (one flat all-reduce); a no-op alone."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    offset = 0
    for grad in grads:
        grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
        offset += grad.numel()


def backward_and_step(optimizers: Sequence[torch.optim.Optimizer], loss: torch.Tensor) -> None:
    """One update of the networks behind ``optimizers`` on ``loss``, gradients averaged over the
    workers first (a no-op in one process)."""
    for optimizer in optimizers:
        optimizer.zero_grad(set_to_none=True)
    loss.backward()
    for optimizer in optimizers:
        average_gradients([p for group in optimizer.param_groups for p in group["params"]])
        optimizer.step()


def broadcast_module(module: nn.Module) -> None:
    """Give every worker rank 0's parameters and buffers (spectral-norm vectors included)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return
    with torch.no_grad():
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)


def finish() -> None:
    """Wait for every worker, then leave the process group (a no-op alone)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def task_slice(tasks_per_step: int, context: DistContext) -> tuple[int, int]:
    """(first task index, task count) of this worker; ``tasks_per_step`` is per worker,
    so N workers train on N × tasks_per_step tasks per step."""
    return context.rank * tasks_per_step, tasks_per_step
