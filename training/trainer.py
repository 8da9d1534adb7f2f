"""The meta-training run: build θ, θ_m and D, optimise them step by step, log, save and resume.

Reads as: check → build → restore → loop (sample tasks → meta step → EMA → log → save).
"""

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from f2n.errors import ConfigError, WeightsError
from f2n.training.checkpoint import (
    TrainState,
    checkpoint_paths,
    load_checkpoint,
    save_checkpoint,
)
from f2n.training.config import TrainConfig, config_from_dict, config_to_dict
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
from f2n.weights import load_into

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
            _append_log(out_dir / "log.jsonl", {"step": done, **logs, "seconds": time.perf_counter() - began})
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
    state = load_checkpoint(config.run.resume)
    saved = config_from_dict(state.config)
    if saved.net != config.net and config.run.sr_weights is None:
        raise ConfigError(f"resume checkpoint has net {saved.net}, this run asks for {config.net}")
    modules = {"sr": run.modules.sr, "masknet": run.modules.masknet, "disc": run.modules.disc, "ema": run.ema}
    for name, module in modules.items():
        if module is None:
            continue
        if name not in state.modules:
            raise ConfigError(f"resume checkpoint has no {name} state (it holds {sorted(state.modules)}); "
                              "keep the loss weights and EMA setting of the run being resumed")
        load_into(module, {k: v.to(_device_of(module)) for k, v in state.modules[name].items()}, what=f"{name} of {config.run.resume}")
    optimizers = {"sr": run.optimizers.sr, "masknet": run.optimizers.masknet, "disc": run.optimizers.disc}
    for name, optimizer in optimizers.items():
        if optimizer is not None and name in state.optimizers:
            optimizer.load_state_dict(state.optimizers[name])
    log(f"resumed from {config.run.resume} at step {state.step}")
    return state.step


def _save(run: Run, config: TrainConfig, step: int) -> Path:
    modules = {"sr": run.modules.sr.state_dict(), "masknet": run.modules.masknet.state_dict()}
    if run.modules.disc is not None:
        modules["disc"] = run.modules.disc.state_dict()
    if run.ema is not None:
        modules["ema"] = run.ema.state_dict()
    optimizers = {name: opt.state_dict() for name, opt in
                  (("sr", run.optimizers.sr), ("masknet", run.optimizers.masknet), ("disc", run.optimizers.disc))
                  if opt is not None}
    # The resume path is a property of this invocation, not of the run.
    saved_config = config_to_dict(replace(config, run=replace(config.run, resume=None)))
    deploy = run.ema.module.state_dict() if run.ema is not None else modules["sr"]
    return save_checkpoint(config.run.out_dir, TrainState(step, modules, optimizers, saved_config),
                           deploy, config.optim.alpha, value_range=run.modules.sr.value_range)


def _append_log(path: Path, record: dict[str, float]) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def _device_of(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


def _silent(_: str) -> None:
    """Only rank 0 talks."""
