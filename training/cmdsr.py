"""CMDSR training (``f2n-train --method cmdsr``): the ConditionNet learns to modulate θ from
a support set so that θ′ = θ·(1 + γ) super-resolves the rest of the same image better.

Reads as: check → build → restore → loop (sample tasks → L1 on the queries with θ′ →
Adam step → log → validate and save). θ is frozen unless ``CmdsrConfig.train_sr``.
Single process (no torchrun): the ConditionNet is small and a step is a few forward passes.
"""

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from tqdm import tqdm

from f2n.errors import ConfigError, EngineUnavailableError
from f2n.nets.condition_net import ConditionNet, ConditionNetConfig, modulated_convs, modulated_weights
from f2n.training.checkpoint import append_log, capture, checkpoint_paths, resume, save_checkpoint
from f2n.training.cmdsr_tasks import CmdsrTask, CmdsrTaskSampler
from f2n.training.config import TrainConfig, saved_config
from f2n.training.data import list_images
from f2n.training.models import build_sr

Log = Callable[[str], None]


def train_cmdsr(config: TrainConfig, *, log: Log = print, progress: bool = True, device: str = "auto") -> Path:
    """Train to ``config.run.steps``; returns the last f2n checkpoint (θ + ConditionNet)."""
    target = _device(device)
    train_images, val_images = _split_images(config)
    torch.manual_seed(config.run.seed)
    sr = build_sr(config, log).to(target).requires_grad_(config.cmdsr.train_sr)
    condition_net = build_condition_net(sr, config).to(target)
    optimizers = {"condition": torch.optim.Adam(condition_net.parameters(), lr=config.cmdsr.lr_cond,
                                                betas=config.optim.betas)}
    if config.cmdsr.train_sr:
        optimizers["sr"] = torch.optim.Adam(sr.parameters(), lr=config.optim.lr_sr, betas=config.optim.betas)
    start = _resume(sr, condition_net, optimizers, config, log) if config.run.resume is not None else 0
    if start >= config.run.steps:
        raise ConfigError(f"nothing to do: the run is already at step {start}, asked for {config.run.steps} steps")
    sampler = CmdsrTaskSampler(train_images, config.data, config.cmdsr, config.run.seed)
    val_sampler = CmdsrTaskSampler(val_images, config.data, config.cmdsr, config.run.seed)
    val_tasks = [val_sampler.task(0, index).to(target) for index in range(config.cmdsr.val_tasks)] if val_images else []
    out_dir = config.run.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    bar = tqdm(range(start, config.run.steps), initial=start, total=config.run.steps, disable=not progress,
               desc="cmdsr-train")
    for step in bar:
        began = time.perf_counter()
        tasks = [sampler.task(step, index).to(target) for index in range(config.data.tasks_per_step)]
        loss = torch.stack([task_loss(sr, condition_net, task) for task in tasks]).mean()
        for optimizer in optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for optimizer in optimizers.values():
            optimizer.step()
        done = step + 1
        record: dict[str, float] = {"step": done, "loss": float(loss.detach()), "seconds": time.perf_counter() - began}
        last = done == config.run.steps
        if done % config.run.checkpoint_every == 0 or last:
            record.update(validate(sr, condition_net, val_tasks))
            _save(sr, condition_net, optimizers, config, done)
        if done % config.run.log_every == 0 or last or "val_l1_cmdsr" in record:
            append_log(out_dir / "log.jsonl", record)
            bar.set_postfix(loss=f"{record['loss']:.4f}")
    return checkpoint_paths(out_dir, config.run.steps)[0]


def build_condition_net(sr: nn.Module, config: TrainConfig) -> ConditionNet:
    cmdsr = config.cmdsr
    net_config = ConditionNetConfig(num_feat=cmdsr.cond_feat, num_layers=cmdsr.cond_layers, modulate=cmdsr.modulate)
    convs = modulated_convs(sr, net_config.modulate)
    if not convs:
        raise ConfigError(f"no conv of the SR network matches the modulate prefixes {list(cmdsr.modulate)}")
    return ConditionNet(convs, net_config)


def query_l1(sr: nn.Module, weights: dict[str, torch.Tensor], task: CmdsrTask) -> torch.Tensor:
    return F.l1_loss(functional_call(sr, weights, (task.query_lq,)), task.query_hq)


def task_loss(sr: nn.Module, condition_net: ConditionNet, task: CmdsrTask) -> torch.Tensor:
    """L1(f(LR_q; θ′), HR_q) with θ′ modulated from the task's support set."""
    return query_l1(sr, modulated_weights(sr, condition_net, task.support), task)


@torch.no_grad()
def validate(sr: nn.Module, condition_net: ConditionNet, tasks: Sequence[CmdsrTask]) -> dict[str, float]:
    """Mean held-out query L1 with θ and with θ′ (empty without held-out images)."""
    if not tasks:
        return {}
    base = dict(sr.named_parameters())
    return {"val_l1_base": sum(float(query_l1(sr, base, task)) for task in tasks) / len(tasks),
            "val_l1_cmdsr": sum(float(task_loss(sr, condition_net, task)) for task in tasks) / len(tasks)}


def _device(name: str) -> torch.device:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("f2n-train --method cmdsr runs in one process; start it without torchrun")
    if name == "cuda" and not torch.cuda.is_available():
        raise EngineUnavailableError("--device cuda requested but CUDA is not available here")
    return torch.device(("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name)


def _split_images(config: TrainConfig) -> tuple[tuple[Path, ...], tuple[Path, ...]]:
    """(training images, held-out images): the last ``val_images`` of the sorted folder are held out."""
    images = list_images(config.data.natural_dir, "natural-image")
    held = config.cmdsr.val_images
    if held and len(images) <= held:
        raise ConfigError(f"natural-image folder {config.data.natural_dir} has {len(images)} images, "
                          f"expected more than the {held} held out for validation (--val-images)")
    return (images[:-held], images[-held:]) if held else (images, ())


def _resume(sr: nn.Module, condition_net: ConditionNet, optimizers: dict[str, torch.optim.Optimizer],
            config: TrainConfig, log: Log) -> int:
    # a start from --sr-weights takes the net from the weights, so the config's net need not match
    fixed = ("run.method",) if config.run.sr_weights is not None else ("run.method", "net")
    return resume(config.run.resume, {"sr": sr, "condition": condition_net}, optimizers, saved_config(config), fixed,
                  log)


def _save(sr: nn.Module, condition_net: ConditionNet, optimizers: dict[str, torch.optim.Optimizer],
          config: TrainConfig, step: int) -> Path:
    state = capture(step, {"sr": sr, "condition": condition_net}, optimizers, saved_config(config))
    condition_config = {**asdict(condition_net.config), "modulate": list(condition_net.config.modulate)}
    return save_checkpoint(config.run.out_dir, state, state.modules["sr"], None, condition_config, sr.value_range)

