"""Training ReDegNet (``f2n-train --method redegnet``; Li et al., ECCV 2022): DegNet and SynNet, and
F2N-ESRGAN — an RRDBNet θ and its U-Net discriminator — on SynNet's renderings.

Reads as: check → build (DegNet, SynNet encoder and generator: random, or the released files;
θ: random or ``sr_weights``) → resume → loop (sample the step's images → the step of
:mod:`f2n.training.redegnet_step` → log → save). Runs alone or under ``torchrun``: each worker
draws its own samples, gradients are averaged, the main worker writes the log and checkpoints.

θ is trained on [−1, 1] images, as the official code trains it: its saved files
(``net_f2n_N.pth``) are a signed-range network, like the released F2N-ESRGAN.

Not here (said in docs/redegnet.md): the official ``train_with_otherDegs`` θ step (off in the
official options too); the official ``CheckDeg`` (Ω of its validation faces, used for θ's input
in 3 steps of 10), which needs the official validation set; the official ``same_degradation``
and BSRGAN pipelines — f2n's Real-ESRGAN second-order degradation at ×4, upsampled back, stands
in; the random rescaling of the crops, the colour jitter and the grey conversion. Adam at 1e-4
for every network, as the official options.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from f2n.errors import ConfigError
from f2n.nets import RRDBNet
from f2n.nets.discriminator import UNetDiscriminatorSN
from f2n.nets.redegnet_blocks import official_channels
from f2n.nets.redegnet_degnet import DegNet
from f2n.nets.redegnet_discriminator import ReDegDiscriminator
from f2n.nets.redegnet_syn_encoder import SynNetEncoder
from f2n.nets.redegnet_syn_generator import SynNetGenerator
from f2n.runtime import load_supported_network
from f2n.runtime.redegnet import WEIGHT_NAMES, ReDegNets
from f2n.training.checkpoint import append_log, capture, checkpoint_paths, method_config, resume, save_train_state
from f2n.training.data import list_images
from f2n.training.distributed import DistContext, broadcast_module, finish, init_from_env
from f2n.training.models import load_discriminator
from f2n.training.redegnet_data import face_pairs, redeg_batch, sr_batch
from f2n.training.redegnet_step import (
    REDEG_VGG_LAYERS,
    SR_RESIZE_MODES,
    SR_VGG_LAYERS,
    SWITCH_PROBABILITY,
    Criteria,
    ReDegLosses,
    ReDegModels,
    SRLosses,
    StepDraws,
    train_step,
)
from f2n.vgg_perceptual import PerceptualStyle
from f2n.weights import load_into, weight_path
from f2n.weights.checkpoint import VALUE_RANGE_META, save_safetensors_atomic
from f2n.weights.loss_networks import vgg19_features

Log = Callable[[str], None]
RELEASED_FILES = {"degnet": "net_deg", "encoder": "net_synE", "generator": "net_synG", "disc": "net_synD",
                  "sr": "net_f2n", "sr_disc": "net_f2nD"}  # the official save names


@dataclass(frozen=True)
class ReDegTrainConfig:
    face_pairs_dir: Path  # lq/ and pseudo_hq/ with the same file names (aligned faces)
    natural_dir: Path
    out_dir: Path
    steps: int
    batch_size: int = 4  # per worker
    size: int = 256  # random networks only: the released files fix size and widths
    narrow: float = 1.0  # random networks only: × the released channel table
    style_dim: int = 512
    n_mlp: int = 8
    init_released: bool = False  # start from the registry's three released files
    train_sr: bool = True  # the F2N-ESRGAN half of the step
    sr_weights: Path | None = None  # θ's start (a file or registry name, signed range); None: random
    sr_disc_weights: Path | None = None  # its U-Net D's start (a Real-ESRGAN netD file); None: random
    num_block: int = 23  # random θ (the official F2N-ESRGAN's RRDBNet 23/64/32, D 64)
    num_feat: int = 64
    num_grow_ch: int = 32
    disc_feat: int = 64
    vgg_weights: Path | None = None
    lr: float = 1e-4
    seed: int = 0
    checkpoint_every: int = 1000
    log_every: int = 10
    resume: Path | None = None
    losses: ReDegLosses = field(default_factory=ReDegLosses)
    sr_losses: SRLosses = field(default_factory=SRLosses)

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError(f"steps and batch size must be >= 1, got {self.steps}, {self.batch_size}")
        if not 0 < self.narrow <= 1:
            raise ConfigError(f"narrow must be in (0, 1], got {self.narrow}")


def train_redegnet(config: ReDegTrainConfig, *, log: Log = print, progress: bool = True,
                   device: str = "auto") -> Path | None:
    """Train to ``config.steps``; returns the last checkpoint's DegNet file on the main worker, None
    on the others. Under ``torchrun`` it joins and finally leaves the process group."""
    context = init_from_env(device)
    log = log if context.is_main else _silent
    pairs = face_pairs(config.face_pairs_dir)
    naturals = list_images(config.natural_dir, "natural image")
    torch.manual_seed(config.seed)  # identical random init on every worker
    models = build_models(config, log)
    modules = models.modules()
    for module in modules.values():
        module.to(context.device).train()
    criteria = _criteria(config, log, context.device)
    optimizers = {name: torch.optim.Adam(module.parameters(), lr=config.lr) for name, module in modules.items()}
    start = _resume(modules, optimizers, config, log) if config.resume is not None else 0
    if start >= config.steps:
        raise ConfigError(f"nothing to do: the run is already at step {start}, asked for {config.steps} steps")
    for module in modules.values():
        broadcast_module(module)
    config.out_dir.mkdir(parents=True, exist_ok=True)
    last = None
    for step in tqdm(range(start, config.steps), initial=start, total=config.steps,
                     disable=not (progress and context.is_main), desc="redegnet-train"):
        began = time.perf_counter()
        batch, draws = sample_step(pairs, naturals, step, context, config, models.nets.crop)
        record = train_step(models, optimizers, {name: t.to(context.device) for name, t in batch.items()}, criteria,
                            draws)
        done = step + 1
        record.update(step=done, seconds=time.perf_counter() - began)
        if context.is_main and (done % config.checkpoint_every == 0 or done == config.steps):
            last = _save(modules, optimizers, config, done)
        if context.is_main and (done % config.log_every == 0 or done == config.steps):
            append_log(config.out_dir / "log.jsonl", record)
    finish()  # every worker returns once the main one has written the last checkpoint
    return last


def sample_step(pairs: tuple[tuple[Path, Path], ...], naturals: tuple[Path, ...], step: int, context: DistContext,
                config: ReDegTrainConfig, size: int) -> tuple[dict[str, torch.Tensor], StepDraws]:
    """The step's images and draws, seeded by the seed, the step and the worker."""
    rng = np.random.default_rng([config.seed, step, context.rank])
    batch = redeg_batch(pairs, naturals, rng, config.batch_size, size)
    switch = bool(rng.uniform() < SWITCH_PROBABILITY)
    if not config.train_sr:
        return batch, StepDraws(switch)
    batch.update(sr_batch(naturals, rng, config.batch_size, size))
    return batch, StepDraws(switch, str(rng.choice(SR_RESIZE_MODES)))


def build_models(config: ReDegTrainConfig, log: Log) -> ReDegModels:
    nets = build_nets(config, log)
    if not config.train_sr:
        log("F2N-ESRGAN θ not trained (--no-redegnet-sr)")
        return ReDegModels(nets, build_discriminator(nets, config))
    return ReDegModels(nets, build_discriminator(nets, config), *build_sr(config, log))


def build_nets(config: ReDegTrainConfig, log: Log) -> ReDegNets:
    if config.init_released:
        nets = ReDegNets.from_files(*(weight_path(WEIGHT_NAMES[role]) for role in ("degnet", "encoder", "generator")))
        log("ReDegNet networks initialised from the released files")
        return nets
    channels = {resolution: max(1, int(width * config.narrow)) for resolution, width in official_channels().items()}
    return ReDegNets(DegNet(config.size, config.style_dim, channels), SynNetEncoder(config.size, channels),
                     SynNetGenerator(config.size, config.style_dim, config.n_mlp, channels))


def build_discriminator(nets: ReDegNets, config: ReDegTrainConfig) -> ReDegDiscriminator | None:
    """The official D for 256² and Ω of 512 (base width 64); for other sizes a base width that
    makes its last block as wide as Ω, which it is concatenated with."""
    if config.losses.adversarial == 0:
        return None
    style_dim, halvings = nets.degnet.style_dim, int(np.log2(nets.crop)) - 4
    if style_dim > 512 or style_dim % 2**halvings:
        raise ConfigError(f"the discriminator needs Ω at most 512 wide and divisible by {2**halvings}, got {style_dim}")
    return ReDegDiscriminator(nets.crop, style_dim // 2**halvings)


def build_sr(config: ReDegTrainConfig, log: Log) -> tuple[RRDBNet, UNetDiscriminatorSN]:
    """θ and its U-Net D, from their files or random."""
    if config.sr_weights is None:
        log(f"θ: random RRDBNet ({config.num_block} blocks, {config.num_feat} features)")
        sr = RRDBNet(num_feat=config.num_feat, num_block=config.num_block, num_grow_ch=config.num_grow_ch)
    else:
        loaded = load_supported_network(str(config.sr_weights))  # a file or a registry name; x4 only
        shape = loaded.descriptor
        log(f"θ: {loaded.path} ({shape.num_block} blocks); trained on [-1, 1] images, as the official")
        if shape.value_range != "signed":
            log(f"warning: θ's start {loaded.path} runs in [0, 1] ({loaded.value_range.source}); trained here on "
                "[-1, 1] it becomes a signed-range network (the official starts from F2N-ESRGAN)")
        # The step feeds the official's [-1, 1] tensors as they are, so θ is built without the
        # in-forward mapping of a signed network; the saved θ records "signed" (_save).
        sr = RRDBNet(num_feat=shape.num_feat, num_block=shape.num_block, num_grow_ch=shape.num_grow_ch)
        load_into(sr, loaded.model.state_dict(), what=f"θ's start {loaded.path}")
    if config.sr_disc_weights is None:
        log(f"θ's D: random U-Net discriminator ({config.disc_feat} features)")
        return sr, UNetDiscriminatorSN(num_feat=config.disc_feat)
    log(f"θ's D: {config.sr_disc_weights}")
    return sr, load_discriminator(config.sr_disc_weights)


def _criteria(config: ReDegTrainConfig, log: Log, device: torch.device) -> Criteria:
    """The loss weights and the VGG terms (one VGG-19 for both), unless switched off."""
    wanted = config.losses.perceptual > 0 or (config.train_sr and config.sr_losses.perceptual > 0)
    if not wanted:
        log("warning: training without the perceptual and style terms (--no-perceptual)")
        return Criteria(config.losses, config.sr_losses)
    features = vgg19_features(config.vgg_weights or weight_path("vgg19"))
    return Criteria(
        config.losses, config.sr_losses,
        PerceptualStyle(features, REDEG_VGG_LAYERS).to(device) if config.losses.perceptual > 0 else None,
        PerceptualStyle(features, SR_VGG_LAYERS).to(device) if config.sr_losses.perceptual > 0 else None,
    )


def _save(modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer], config: ReDegTrainConfig,
          step: int) -> Path:
    """The training state, and the networks in the official save layout (``{"params": state_dict}``)
    beside it: the ReDegNet files load with ``f2n-models add``, θ (signed range) with ``--checkpoint``."""
    state = capture(step, modules, optimizers, method_config("redegnet", config))
    save_train_state(config.out_dir, state)
    folder = checkpoint_paths(config.out_dir, step)[0].parent
    for name, weights in state.modules.items():
        torch.save({"params": weights}, folder / f"{RELEASED_FILES[name]}_{step:07d}.pth")
    if "sr" in state.modules:  # θ for --checkpoint as well, its range recorded (the .pth cannot say it)
        save_safetensors_atomic(folder / f"{RELEASED_FILES['sr']}_{step:07d}.safetensors", state.modules["sr"],
                                {VALUE_RANGE_META: "signed"})
    return folder / f"net_deg_{step:07d}.pth"


def _resume(modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer], config: ReDegTrainConfig,
            log: Log) -> int:
    return resume(config.resume, modules, optimizers, method_config("redegnet", config), ("method",), log)


def _silent(_: str) -> None:
    """Only the main worker talks."""
