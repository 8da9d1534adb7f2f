"""The meta-training run: build θ, θ_m and D, optimise them step by step, log, save and resume.

Reads as: check → build → restore → loop (sample tasks → meta step → EMA → log → save).
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from f2n.errors import ConfigError, WeightsError
from f2n.training.checkpoint import append_log, capture, checkpoint_paths, resume, save_checkpoint
from f2n.training.config import TrainConfig, saved_config
from f2n.training.data import list_images
from f2n.training.distributed import (
    DistContext,
    average_gradients,
    broadcast_module,
    finish,
    init_from_env,
    task_slice,
)
from f2n.training.face_targets import resolve_face_targets
from f2n.training.maml import MetaModules, MetaOptimizers, train_step
from f2n.training.models import build_disc, build_masknet, build_sr
from f2n.training.perceptual import build_lpips
from f2n.training.tasks import TaskSampler

Log = Callable[[str], None]


@dataclass(frozen=True)
class Run:
    """The live objects of one run."""

    modules: MetaModules
    optimizers: MetaOptimizers
    ema: AveragedModel | None
    sampler: TaskSampler


def train(config: TrainConfig, *, log: Log = print, progress: bool = True, device: str = "auto") -> Path | None:
    """Run meta-training to ``config.run.steps``. Returns the last f2n checkpoint on the main
    worker, None on the others. Under ``torchrun`` it joins and finally leaves the process group."""
    context = init_from_env(device)
    log = log if context.is_main else _silent
    run, start = _prepare(config, context, log)
    if start >= config.run.steps:
        raise ConfigError(f"nothing to do: the run is already at step {start}, asked for {config.run.steps} steps")
    out_dir = config.run.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    bar = tqdm(range(start, config.run.steps), initial=start, total=config.run.steps,
               disable=not (progress and context.is_main), desc="meta-train")
    for step in bar:
        began = time.perf_counter()
        first, count = task_slice(config.data.tasks_per_step, context)
        tasks = run.sampler.batch(step, first, count).to(context.device)
        logs = train_step(run.modules, run.optimizers, tasks, config.loss, config.optim, average_gradients)
        if run.ema is not None:
            run.ema.update_parameters(run.modules.sr)
        done = step + 1
        if context.is_main and (done % config.run.log_every == 0 or done == config.run.steps):
            append_log(out_dir / "log.jsonl", {"step": done, **logs, "seconds": time.perf_counter() - began})
            bar.set_postfix(loss=f"{logs['loss']:.4f}")
        if context.is_main and (done % config.run.checkpoint_every == 0 or done == config.run.steps):
            _save(run, config, done)
    finish()  # every worker returns once rank 0 has written the last checkpoint
    return checkpoint_paths(out_dir, config.run.steps)[0] if context.is_main else None


def _prepare(config: TrainConfig, context: DistContext, log: Log) -> tuple[Run, int]:
    """Check the inputs, build everything and restore a checkpoint; returns the run and its first step."""
    faces = list_images(config.data.faces_dir, "faces")
    naturals = list_images(config.data.natural_dir, "natural-image")
    lpips = None
    if config.loss.lpips:
        try:
            lpips = build_lpips().to(context.device)
        except WeightsError as error:
            raise WeightsError(f"{error} (LPIPS needs them; pass --no-lpips to train without LPIPS)") from None
    torch.manual_seed(config.run.seed)  # identical random init on every worker
    sr = build_sr(config, log).to(context.device)
    masknet = build_masknet(config).to(context.device)
    disc = build_disc(config, log).to(context.device) if config.loss.gan else None
    opt = config.optim
    optimizers = MetaOptimizers(
        sr=torch.optim.Adam(sr.parameters(), lr=opt.lr_sr, betas=opt.betas),
        masknet=torch.optim.Adam(masknet.parameters(), lr=opt.lr_mask, betas=opt.betas),
        disc=torch.optim.Adam(disc.parameters(), lr=opt.lr_disc, betas=opt.betas) if disc is not None else None,
    )
    ema = AveragedModel(sr, multi_avg_fn=get_ema_multi_avg_fn(opt.ema_decay)) if opt.ema_decay else None
    restore = resolve_face_targets(config.data.face_targets, context.device, log)
    run = Run(MetaModules(sr, masknet, disc, lpips), optimizers, ema,
              TaskSampler(faces, naturals, config.data, config.run.seed, restore))
    start = _resume(run, config, log) if config.run.resume is not None else 0
    for module in (sr, masknet, disc, ema):
        if module is not None:
            broadcast_module(module)
    return run, start


def _resume(run: Run, config: TrainConfig, log: Log) -> int:
    # a start from --sr-weights takes the net from the weights, so the config's net need not match
    fixed = ("run.method",) if config.run.sr_weights is not None else ("run.method", "net")
    return resume(config.run.resume, _modules(run), _optimizers(run), saved_config(config), fixed, log)


def _save(run: Run, config: TrainConfig, step: int) -> Path:
    state = capture(step, _modules(run), _optimizers(run), saved_config(config))
    deploy = run.ema.module.state_dict() if run.ema is not None else state.modules["sr"]
    return save_checkpoint(config.run.out_dir, state, deploy, config.optim.alpha,
                           value_range=run.modules.sr.value_range)


def _modules(run: Run) -> dict[str, torch.nn.Module | None]:
    return {"sr": run.modules.sr, "masknet": run.modules.masknet, "disc": run.modules.disc, "ema": run.ema}


def _optimizers(run: Run) -> dict[str, torch.optim.Optimizer | None]:
    return {"sr": run.optimizers.sr, "masknet": run.optimizers.masknet, "disc": run.optimizers.disc}



def _silent(_: str) -> None:
    """Only rank 0 talks."""
