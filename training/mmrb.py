"""Training the MMRB face restorer (``f2n-train --method mmrb``; Hu et al., paper 003).

Reads as: check → build (restorer initialised from GPEN, GPEN's discriminator with its first
five convs frozen — FreezeD —, three local discriminators) → restore → loop (sample faces →
degrade → D step → G step → log → save). The losses and their weights are the paper's:
global adversarial (λ_g 0.5), local adversarial on both eyes and the mouth (λ_l 3), L1 (8),
VGG feature matching (0.02), ArcFace identity (10), plus the multi-scale L1 on the decoder's
reconstructions (weight 1: the paper gives none). Learning rates per part are the paper's:
codec 2e-3, global D 2e-5, local D 2e-3, StyleGAN2 2e-4, noise branches 2e-3 (Adam).

What differs from the paper, and why: training pairs come from f2n's Real-ESRGAN second-order
degradation at ×4 (``f2n.training.degradations``), upsampled back to the face size, not the
paper's blur/down/noise/JPEG ranges; the local discriminators are GPEN discriminators at
``local_size`` (the paper does not describe its own); the component boxes come from the FFHQ
template (``f2n.training.face_losses``). Runs alone or under ``torchrun`` (gradients averaged
over the workers, each on its own faces).
"""

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from f2n.errors import ConfigError, WeightsError
from f2n.gan_loss import discriminator_gan_loss, generator_gan_loss
from f2n.nets.gpen_discriminator import GPENDiscriminator
from f2n.nets.mmrb import MMRBRestorer
from f2n.training.checkpoint import append_log, capture, checkpoint_paths, method_config, resume, save_train_state
from f2n.training.data import list_images, load_rgb
from f2n.training.degradations import degrade, sample_params
from f2n.training.distributed import DistContext, backward_and_step, broadcast_module, finish, init_from_env
from f2n.training.face_losses import COMPONENTS, FeatureMatching, IdentityLoss, component_boxes, crop_component
from f2n.weights import load_network, load_state_dict_file, weight_path
from f2n.weights.gpen import gpen_hyperparameters
from f2n.weights.mmrb import init_from_gpen, save_mmrb_restorer

Log = Callable[[str], None]
FROZEN_DISC_CONVS = 5  # FreezeD: the paper freezes the first five convolution layers


@dataclass(frozen=True)
class MmrbLosses:
    global_adv: float = 0.5
    local_adv: float = 3.0
    l1: float = 8.0
    feature_matching: float = 0.02  # 0 switches the term off (no VGG weights needed)
    identity: float = 10.0  # 0 switches the term off (no ArcFace weights needed)
    pyramid: float = 1.0


@dataclass(frozen=True)
class MmrbRates:
    codec: float = 2e-3
    global_disc: float = 2e-5
    local_disc: float = 2e-3
    generator: float = 2e-4
    noise: float = 2e-3


@dataclass(frozen=True)
class MmrbConfig:
    faces_dir: Path
    out_dir: Path
    steps: int
    gpen_weights: Path | None = None  # None: a random StyleGAN2 (smoke tests; say so, it is no prior)
    disc_weights: Path | None = None  # GPEN-BFR-512-D.pth; None: the registry's gpen-bfr-512-d (random below 512 px)
    vgg_weights: Path | None = None
    arcface_weights: Path | None = None
    batch_size: int = 4
    size: int = 512  # used only without GPEN weights, which fix the size and widths
    narrow: float = 1.0
    channel_multiplier: int = 2
    style_dim: int = 512
    n_mlp: int = 8
    decoder_blocks: int = 1
    local_size: int = 64
    local_narrow: float = 0.25
    ood: bool = False
    seed: int = 0
    checkpoint_every: int = 1000
    log_every: int = 10
    resume: Path | None = None
    losses: MmrbLosses = field(default_factory=MmrbLosses)
    rates: MmrbRates = field(default_factory=MmrbRates)

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError(f"steps and batch size must be >= 1, got {self.steps}, {self.batch_size}")
        negative = {name: value for name, value in asdict(self.losses).items() if value < 0}
        if negative:
            raise ConfigError(f"loss weights must be >= 0, got {negative}")


@dataclass
class Nets:
    restorer: MMRBRestorer
    disc: GPENDiscriminator
    local: nn.ModuleDict  # one discriminator per face component
    feature_matching: FeatureMatching | None
    identity: IdentityLoss | None


def train_mmrb(config: MmrbConfig, *, log: Log = print, progress: bool = True, device: str = "auto") -> Path | None:
    """Train to ``config.steps``; returns the last restorer file on the main worker."""
    context = init_from_env(device)
    log = log if context.is_main else (lambda line: None)
    faces = list_images(config.faces_dir, "face")
    torch.manual_seed(config.seed)
    nets = build_nets(config, log)
    for module in (nets.restorer, nets.disc, nets.local, nets.feature_matching, nets.identity):
        if module is not None:
            module.to(context.device)
    optimizers = build_optimizers(nets, config.rates)
    start = _resume(nets, optimizers, config, log) if config.resume is not None else 0
    if start >= config.steps:
        raise ConfigError(f"nothing to do: the run is already at step {start}, asked for {config.steps} steps")
    for module in (nets.restorer, nets.disc, nets.local):
        broadcast_module(module)
    boxes = component_boxes(nets.restorer.size)
    config.out_dir.mkdir(parents=True, exist_ok=True)
    bar = tqdm(range(start, config.steps), initial=start, total=config.steps, disable=not progress or not context.is_main,
               desc="mmrb-train")
    last_path = None
    for step in bar:
        began = time.perf_counter()
        lq, hq = training_pairs(faces, step, context, config, nets.restorer.size)
        record = train_step(nets, optimizers, lq, hq, boxes, config)
        done = step + 1
        record.update(step=done, seconds=time.perf_counter() - began)
        if context.is_main and (done % config.checkpoint_every == 0 or done == config.steps):
            last_path = _save(nets, optimizers, config, done)
        if context.is_main and (done % config.log_every == 0 or done == config.steps):
            append_log(config.out_dir / "log.jsonl", record)
            bar.set_postfix(g=f"{record['g_total']:.3f}", d=f"{record['d_total']:.3f}")
    finish()
    return last_path


def build_nets(config: MmrbConfig, log: Log) -> Nets:
    """The restorer (from GPEN where given), GPEN's D with FreezeD, the local Ds, the loss networks."""
    if config.gpen_weights is not None:
        gpen_state = load_state_dict_file(config.gpen_weights)
        hyper = gpen_hyperparameters(gpen_state, config.gpen_weights)
        restorer = MMRBRestorer(**{key: hyper[key] for key in ("size", "style_dim", "n_mlp", "channel_multiplier", "narrow")},
                                decoder_blocks=config.decoder_blocks)
        report = init_from_gpen(restorer, gpen_state)
        log(f"restorer initialised from {config.gpen_weights}: {report.summary()}")
        if report.shape_mismatch:
            log(f"kept (shape differs from GPEN): {', '.join(report.shape_mismatch[:8])}")
    else:
        restorer = MMRBRestorer(config.size, config.style_dim, config.n_mlp, config.channel_multiplier, config.narrow,
                                config.decoder_blocks)
        log("warning: no --gpen-weights: the StyleGAN2 prior starts random (for smoke tests only)")
    disc = _global_disc(restorer, config, log)
    freeze_first_convs(disc, FROZEN_DISC_CONVS)
    local = nn.ModuleDict({name: GPENDiscriminator(config.local_size, channel_multiplier=1, narrow=config.local_narrow)
                           for name in COMPONENTS})
    losses = config.losses
    feature_matching = FeatureMatching(_loss_weights(config.vgg_weights, "vgg19", "--no-feature-matching")) \
        if losses.feature_matching else None
    identity = IdentityLoss(_loss_weights(config.arcface_weights, "arcface-ir-se50", "--no-identity")) \
        if losses.identity else None
    return Nets(restorer.train(), disc.train(), local.train(), feature_matching, identity)


def freeze_first_convs(disc: GPENDiscriminator, count: int) -> list[nn.Module]:
    """FreezeD: the first ``count`` conv layers (conv weight and its activation bias) stop learning."""
    frozen = disc.conv_layers()[:count]
    for layer in frozen:
        layer.requires_grad_(False)
    return frozen


def build_optimizers(nets: Nets, rates: MmrbRates) -> dict[str, torch.optim.Optimizer]:
    restorer = nets.restorer
    generator = [(name, p) for name, p in restorer.generator.named_parameters()]
    noise = [p for name, p in generator if ".noise." in name]
    style = [p for name, p in generator if ".noise." not in name]
    codec = [p for name, p in restorer.named_parameters() if not name.startswith("generator.")]
    betas = (0.0, 0.99)  # StyleGAN2's Adam betas, as GPEN trains
    return {
        "g": torch.optim.Adam([{"params": codec, "lr": rates.codec}, {"params": style, "lr": rates.generator},
                               {"params": noise, "lr": rates.noise}], betas=betas),
        "d": torch.optim.Adam([p for p in nets.disc.parameters() if p.requires_grad], lr=rates.global_disc, betas=betas),
        "local": torch.optim.Adam(nets.local.parameters(), lr=rates.local_disc, betas=betas),
    }


def training_pairs(faces: tuple[Path, ...], step: int, context: DistContext, config: MmrbConfig,
                   size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(LQ, HQ) faces in [−1, 1], (B, 3, size, size): HQ resized to the restorer's size and
    randomly flipped, LQ its ×4 degradation upsampled back (bicubic). Seeded by step and rank."""
    rng = np.random.default_rng([config.seed, step, context.rank])
    chosen = rng.choice(len(faces), size=config.batch_size, replace=len(faces) < config.batch_size)
    hq = torch.stack([load_rgb(faces[int(index)], 16) for index in chosen])
    hq = F.interpolate(hq, size=(size, size), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    flip = torch.from_numpy(rng.uniform(size=config.batch_size) < 0.5)
    hq = torch.where(flip[:, None, None, None], hq.flip(-1), hq)
    lq = degrade(hq, sample_params(rng, ood=config.ood), scale=4)
    lq = F.interpolate(lq, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
    return (lq * 2 - 1).to(context.device), (hq * 2 - 1).to(context.device)


def train_step(nets: Nets, optimizers: dict[str, torch.optim.Optimizer], lq: torch.Tensor, hq: torch.Tensor,
               boxes: dict[str, tuple[int, int, int]], config: MmrbConfig) -> dict[str, float]:
    """One discriminator update, then one restorer update. Returns the loss terms."""
    losses, local_size = config.losses, config.local_size
    restored, reconstructions = nets.restorer.restore(lq)

    # Discriminators: real faces against the detached restorations.
    fake = restored.detach()
    d_global = discriminator_gan_loss(nets.disc(hq), nets.disc(fake))
    d_local = sum(discriminator_gan_loss(nets.local[name](crop_component(hq, boxes[name], local_size)),
                                         nets.local[name](crop_component(fake, boxes[name], local_size)))
                  for name in COMPONENTS)
    backward_and_step((optimizers["d"], optimizers["local"]), d_global + d_local)

    # Restorer: the discriminators take no gradient from its loss.
    discriminators = [p for p in (*nets.disc.parameters(), *nets.local.parameters()) if p.requires_grad]
    for parameter in discriminators:
        parameter.requires_grad_(False)
    terms = {
        "g_global": generator_gan_loss(nets.disc(restored)),
        "g_local": sum(generator_gan_loss(nets.local[name](crop_component(restored, boxes[name], local_size)))
                       for name in COMPONENTS),
        "l1": F.l1_loss(restored, hq),
        "pyramid": sum(F.l1_loss(reconstruction, F.interpolate(hq, size=reconstruction.shape[-2:], mode="area"))
                       for reconstruction in reconstructions),
    }
    if nets.feature_matching is not None:
        terms["feature_matching"] = nets.feature_matching(restored, hq)
    if nets.identity is not None:
        terms["identity"] = nets.identity(restored, hq)
    weights = {"g_global": losses.global_adv, "g_local": losses.local_adv, "l1": losses.l1, "pyramid": losses.pyramid,
               "feature_matching": losses.feature_matching, "identity": losses.identity}
    g_total = sum(weights[name] * value for name, value in terms.items())
    backward_and_step((optimizers["g"],), g_total)
    for parameter in discriminators:
        parameter.requires_grad_(True)
    record = {name: float(value.detach()) for name, value in terms.items()}
    record.update(d_global=float(d_global.detach()), d_local=float(d_local.detach()),
                  d_total=float((d_global + d_local).detach()), g_total=float(g_total.detach()))
    return record




def _global_disc(restorer: MMRBRestorer, config: MmrbConfig, log: Log) -> GPENDiscriminator:
    """GPEN's discriminator from --disc-weights or the registry (fetched on first use) for a
    512 restorer; a random one, with a warning, for the small restorers of smoke tests."""
    path = config.disc_weights
    if path is None and restorer.size == 512:
        path = weight_path("gpen-bfr-512-d")  # WeightsError names the file and how to add it
    if path is None:
        log(f"warning: a {restorer.size}px restorer has no pretrained GPEN discriminator: the global D starts random")
        hyper = restorer.hyperparameters
        return GPENDiscriminator(restorer.size, hyper["channel_multiplier"], hyper["narrow"])
    _, disc = load_network(load_state_dict_file(path), path, expected="gpen-discriminator")
    if disc.size != restorer.size:
        raise ConfigError(f"discriminator {path} judges {disc.size}px faces, the restorer makes {restorer.size}px faces")
    log(f"global discriminator from {path}")
    return disc


def _loss_weights(given: Path | None, registry_name: str, switch_off: str) -> Path:
    if given is not None:
        return given
    try:
        return weight_path(registry_name)  # fetched from the official URL on first use
    except WeightsError as error:
        raise WeightsError(f"{error}; or train without this loss term: {switch_off}") from None


def _save(nets: Nets, optimizers: dict[str, torch.optim.Optimizer], config: MmrbConfig, step: int) -> Path:
    save_train_state(config.out_dir, capture(step, _modules(nets), optimizers, method_config("mmrb", config)))
    return save_mmrb_restorer(checkpoint_paths(config.out_dir, step)[0], nets.restorer)


def _resume(nets: Nets, optimizers: dict[str, torch.optim.Optimizer], config: MmrbConfig, log: Log) -> int:
    return resume(config.resume, _modules(nets), optimizers, method_config("mmrb", config), ("method",), log)


def _modules(nets: Nets) -> dict[str, nn.Module]:
    return {"restorer": nets.restorer, "disc": nets.disc, "local": nets.local}
