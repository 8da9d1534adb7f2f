"""Training ReDegNet's DegNet and SynNet (``f2n-train --method redegnet``; Li et al., ECCV 2022).

Reads as: check → build (DegNet, SynNet encoder and generator: random, or the released files)
→ resume → loop (sample a batch → one step → log → save). Each sample is, at the networks'
size and in [−1, 1]: a real (pseudo-HQ, LQ) face pair crop, and one synthetic degradation
applied alike to that HQ face crop and to an HQ natural crop (the "same degradation" pair).
A step is the official ``redeg_model.py`` ReDegNet step: Ω of the real pair, of the synthetic
face pair and of the synthetic natural pair; the generator renders the real face through its
own Ω and — with probability 0.8 — the natural crop through the synthetic face's Ω and the face
crop through the natural's (the switch), else each through its own; the losses, with the
official weights (``options/train_redeg.yml``):

* reconstruction: L1 × 10 on the three renderings, averaged;
* perceptual and style (VGG-19 before ReLU at conv1_2…conv5_4, layer weights 2, 1.2, 0.6, 0.2,
  0.1, perceptual weight 0.2, style weight 160 then ÷ 3), averaged over the three renderings —
  only with VGG-19 weights (``--vgg-weights`` or the registry's ``vgg19``); ``--no-perceptual``
  trains without both;
* degradation consistency: L1 × 10 × 10 between the synthetic natural and face Ω;
* the disentangling (contrastive) term: 4 / (L1 × 10 between the real and the synthetic face Ω + 1e-7);
* the conditional adversarial term: hinge, weight 1e-2, on the real face's rendering, judged by
  ``ReDegDiscriminator`` given the clean face and (detached) Ω; the discriminator then takes its
  own hinge step on the real LQ face against that rendering.

Not here (said in docs/redegnet.md): the F2N-ESRGAN half of the official step. The synthetic degradation
is f2n's Real-ESRGAN second-order one at ×4 (:mod:`f2n.training.degradations`), upsampled back,
not the official ``same_degradation`` pipeline; real face crops are taken at the pair's own
scale (the official code also rescales them at random). Adam at 1e-4 for the three networks, as
the official options. One process (no DDP).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from f2n.errors import ConfigError
from f2n.nets.redegnet_blocks import official_channels
from f2n.nets.redegnet_degnet import DegNet
from f2n.nets.redegnet_discriminator import ReDegDiscriminator
from f2n.nets.redegnet_syn_encoder import SynNetEncoder
from f2n.nets.redegnet_syn_generator import SynNetGenerator
from f2n.runtime.redegnet import BORDER_FRACTION, WEIGHT_NAMES, ReDegNets
from f2n.training.checkpoint import TrainState, checkpoint_paths, load_checkpoint, save_train_state
from f2n.training.data import list_images, load_rgb
from f2n.training.degradations import degrade, sample_params
from f2n.weights import load_into, load_network, load_state_dict_file, weight_path

Log = Callable[[str], None]
SWITCH_PROBABILITY = 0.8  # redeg_model.py: `random.random() > 0.2`
VGG_CONVS = {2: 2.0, 7: 1.2, 16: 0.6, 25: 0.2, 34: 0.1}  # conv1_2 … conv5_4 (before ReLU) in vgg19.features
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ReDegLosses:
    pixel: float = 10.0  # pixel_syn_opt.loss_weight (× syn_pixel_lambda 1)
    perceptual: float = 0.2  # perceptual_syn_opt.perceptual_weight; 0 switches perceptual and style off
    style: float = 160.0  # perceptual_syn_opt.style_weight
    same_degradation: float = 10.0  # syn_samedeg_lambda (on an L1 already × 10)
    contrastive: float = 4.0  # contrastive_lambda
    adversarial: float = 1e-2  # gan_syn_opt.loss_weight (hinge); 0 trains without the discriminator


@dataclass(frozen=True)
class ReDegTrainConfig:
    face_pairs_dir: Path  # lq/ and pseudo_hq/ with the same file names (aligned faces)
    natural_dir: Path
    out_dir: Path
    steps: int
    batch_size: int = 4
    size: int = 256  # random networks only: the released files fix size and widths
    narrow: float = 1.0  # random networks only: × the released channel table
    style_dim: int = 512
    n_mlp: int = 8
    init_released: bool = False  # start from the registry's three released files
    vgg_weights: Path | None = None
    lr: float = 1e-4
    seed: int = 0
    checkpoint_every: int = 1000
    log_every: int = 10
    resume: Path | None = None
    losses: ReDegLosses = field(default_factory=ReDegLosses)

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError(f"steps and batch size must be >= 1, got {self.steps}, {self.batch_size}")
        if not 0 < self.narrow <= 1:
            raise ConfigError(f"narrow must be in (0, 1], got {self.narrow}")


class PerceptualStyle(nn.Module):
    """BasicSR's PerceptualLoss as the official options set it: L1 of VGG-19 features and of
    their Gram matrices, ImageNet-normalised input, no range conversion (the official code
    feeds its [−1, 1] images as they are, and so does this)."""

    def __init__(self, vgg19_weights: Path) -> None:
        super().__init__()
        _, vgg = load_network(load_state_dict_file(vgg19_weights), vgg19_weights, expected="vgg19")
        self.features = vgg.features[: max(VGG_CONVS) + 1].eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def _features(self, image: torch.Tensor) -> list[torch.Tensor]:
        x, out = (image - self.mean) / self.std, []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in VGG_CONVS:
                out.append(x)
        return out

    def forward(self, rendered: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        got, wanted = self._features(rendered), [f.detach() for f in self._features(target.detach())]
        weights = list(VGG_CONVS.values())
        perceptual = sum(w * F.l1_loss(g, t) for w, g, t in zip(weights, got, wanted))
        style = sum(w * F.l1_loss(_gram(g), _gram(t)) for w, g, t in zip(weights, got, wanted))
        return perceptual, style


def _gram(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    flat = x.reshape(n, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def train_redegnet(config: ReDegTrainConfig, *, log: Log = print, progress: bool = True,
                   device: str = "auto") -> Path | None:
    """Train to ``config.steps``; returns the last checkpoint folder's DegNet file."""
    device = "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
    pairs = face_pairs(config.face_pairs_dir)
    naturals = list_images(config.natural_dir, "natural image")
    torch.manual_seed(config.seed)
    nets = build_nets(config, log)
    for module in (nets.degnet, nets.encoder, nets.generator):
        module.to(device).train()
    perceptual = _perceptual(config, log)
    if perceptual is not None:
        perceptual.to(device)
    disc = build_discriminator(nets, config)
    modules = {**_modules(nets), **({"disc": disc.to(device).train()} if disc is not None else {})}
    optimizers = {name: torch.optim.Adam(module.parameters(), lr=config.lr) for name, module in modules.items()}
    start = _resume(modules, optimizers, config, log) if config.resume is not None else 0
    if start >= config.steps:
        raise ConfigError(f"nothing to do: the run is already at step {start}, asked for {config.steps} steps")
    config.out_dir.mkdir(parents=True, exist_ok=True)
    last = None
    for step in tqdm(range(start, config.steps), initial=start, total=config.steps, disable=not progress,
                     desc="redegnet-train"):
        began = time.perf_counter()
        rng = np.random.default_rng([config.seed, step])
        batch = {name: t.to(device) for name, t in training_batch(pairs, naturals, rng, config, nets.crop).items()}
        record = train_step(nets, disc, optimizers, batch, config.losses, perceptual,
                            switch=rng.uniform() < SWITCH_PROBABILITY)
        done = step + 1
        record.update(step=done, seconds=time.perf_counter() - began)
        if done % config.checkpoint_every == 0 or done == config.steps:
            last = _save(modules, optimizers, config, done)
        if done % config.log_every == 0 or done == config.steps:
            with (config.out_dir / "log.jsonl").open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
    return last


def face_pairs(folder: Path) -> tuple[tuple[Path, Path], ...]:
    """(pseudo-HQ, LQ) file pairs of ``folder``/pseudo_hq and ``folder``/lq, matched by name."""
    hq, lq = (list_images(Path(folder) / sub, f"face pair {sub}") for sub in ("pseudo_hq", "lq"))
    lq_by_name = {path.name: path for path in lq}
    matched = tuple((path, lq_by_name[path.name]) for path in hq if path.name in lq_by_name)
    if not matched:
        raise ConfigError(f"{folder}: no file name is in both pseudo_hq/ and lq/")
    return matched


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


def training_batch(pairs: tuple[tuple[Path, Path], ...], naturals: tuple[Path, ...], rng: np.random.Generator,
                   config: ReDegTrainConfig, size: int) -> dict[str, torch.Tensor]:
    """The step's images, (B, 3, size, size) in [−1, 1]: real face pairs, one synthetic degradation
    applied alike to the HQ face and natural crops (and seeded by the step)."""
    face_hq, face_lq, natural_hq = [], [], []
    for _ in range(config.batch_size):
        hq_path, lq_path = pairs[int(rng.integers(len(pairs)))]
        hq, lq = load_rgb(hq_path, size), load_rgb(lq_path, size)
        if hq.shape != lq.shape:
            raise ConfigError(f"face pair {hq_path.name}: pseudo-HQ {tuple(hq.shape)} and LQ {tuple(lq.shape)} differ")
        border = int(hq.shape[-1] * BORDER_FRACTION)
        y, x = (int(rng.integers(border, max(border, length - border - size) + 1)) for length in hq.shape[-2:])
        flip = rng.uniform() < 0.5
        for image, out in ((hq, face_hq), (lq, face_lq)):
            crop = image[:, y:y + size, x:x + size]
            out.append(crop.flip(-1) if flip else crop)
        natural = load_rgb(naturals[int(rng.integers(len(naturals)))], size)
        ny, nx = (int(rng.integers(0, length - size + 1)) for length in natural.shape[-2:])
        natural_hq.append(natural[:, ny:ny + size, nx:nx + size])
    face_hq_t, natural_hq_t = torch.stack(face_hq), torch.stack(natural_hq)
    params = sample_params(rng)
    synthetic = degrade(torch.cat([natural_hq_t, face_hq_t]), params, scale=4)
    synthetic = F.interpolate(synthetic, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
    natural_syn, face_syn = synthetic.chunk(2)
    batch = {"face_hq": face_hq_t, "face_lq": torch.stack(face_lq), "face_syn_lq": face_syn,
             "natural_hq": natural_hq_t, "natural_syn_lq": natural_syn}
    return {name: image * 2 - 1 for name, image in batch.items()}


def train_step(nets: ReDegNets, disc: ReDegDiscriminator | None, optimizers: dict[str, torch.optim.Optimizer],
               batch: dict[str, torch.Tensor], losses: ReDegLosses, perceptual: PerceptualStyle | None, *,
               switch: bool) -> dict[str, float]:
    """One update of the three networks, then one of the discriminator (the official ReDegNet step)."""
    face_content = nets.encoder(batch["face_hq"])
    natural_content = nets.encoder(batch["natural_hq"])
    face_real_deg = nets.degnet(batch["face_hq"], batch["face_lq"])
    natural_syn_deg = nets.degnet(batch["natural_hq"], batch["natural_syn_lq"])
    face_syn_deg = nets.degnet(batch["face_hq"], batch["face_syn_lq"])
    renders = {
        "face_real": (nets.generator(face_real_deg, face_content), batch["face_lq"]),
        "natural_syn": (nets.generator(face_syn_deg if switch else natural_syn_deg, natural_content),
                        batch["natural_syn_lq"]),
        "face_syn": (nets.generator(natural_syn_deg if switch else face_syn_deg, face_content), batch["face_syn_lq"]),
    }
    terms = {"pixel": losses.pixel * sum(F.l1_loss(got, want) for got, want in renders.values()) / 3}
    if perceptual is not None:
        pairs = [perceptual(got, want) for got, want in renders.values()]
        terms["perceptual"] = losses.perceptual * sum(p for p, _ in pairs) / 3
        terms["style"] = losses.style * sum(s for _, s in pairs) / 3 / 3
    terms["same_degradation"] = losses.same_degradation * losses.pixel * F.l1_loss(natural_syn_deg, face_syn_deg)
    terms["contrastive"] = losses.contrastive / (losses.pixel * F.l1_loss(face_real_deg, face_syn_deg) + 1e-7)
    fake = renders["face_real"][0]
    if disc is not None:
        disc.requires_grad_(False)
        terms["adversarial"] = -losses.adversarial * disc(fake, batch["face_hq"], face_real_deg.detach()).mean()
        disc.requires_grad_(True)
    total = sum(terms.values())
    generators = [optimizers[name] for name in _modules(nets)]
    _update(generators, total)
    record = {name: float(value.detach()) for name, value in terms.items()}
    record["total"] = float(total.detach())
    if disc is not None:  # hinge: real LQ faces above +1, renderings below −1
        condition = (batch["face_hq"], face_real_deg.detach())
        d_loss = F.relu(1 - disc(batch["face_lq"], *condition)).mean() + F.relu(1 + disc(fake.detach(), *condition)).mean()
        _update([optimizers["disc"]], d_loss)
        record["disc"] = float(d_loss.detach())
    return record


def _update(optimizers: list[torch.optim.Optimizer], loss: torch.Tensor) -> None:
    for optimizer in optimizers:
        optimizer.zero_grad(set_to_none=True)
    loss.backward()
    for optimizer in optimizers:
        optimizer.step()


def _modules(nets: ReDegNets) -> dict[str, nn.Module]:
    return {"degnet": nets.degnet, "encoder": nets.encoder, "generator": nets.generator}


def _perceptual(config: ReDegTrainConfig, log: Log) -> PerceptualStyle | None:
    if config.losses.perceptual == 0:
        log("warning: training without the perceptual and style terms (--no-perceptual)")
        return None
    return PerceptualStyle(config.vgg_weights or weight_path("vgg19"))


def _save(modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer], config: ReDegTrainConfig,
          step: int) -> Path:
    """The training state, and the networks as the released files' layout
    (``{"params": state_dict}``) beside it, loadable by ``f2n-models add``."""
    # cloned: the discriminator's convs are registered twice (official names), and safetensors refuses shared storage
    states = {name: {key: value.clone() for key, value in module.state_dict().items()} for name, module in modules.items()}
    saved_config = {"method": "redegnet", **json.loads(json.dumps(asdict(replace(config, resume=None)), default=str))}
    save_train_state(config.out_dir, TrainState(step, states, {n: o.state_dict() for n, o in optimizers.items()},
                                                saved_config))
    folder = checkpoint_paths(config.out_dir, step)[0].parent
    files = {"degnet": "net_deg", "encoder": "net_synE", "generator": "net_synG", "disc": "net_synD"}
    for name, state in states.items():
        torch.save({"params": state}, folder / f"{files[name]}_{step:07d}.pth")
    return folder / f"net_deg_{step:07d}.pth"


def _resume(modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer], config: ReDegTrainConfig,
            log: Log) -> int:
    state = load_checkpoint(config.resume)
    if state.config.get("method") != "redegnet" or set(state.modules) != set(optimizers):
        raise ConfigError(f"resume checkpoint {config.resume} is not a redegnet run with the same networks")
    for name, module in modules.items():
        device = next(module.parameters()).device
        load_into(module, {k: v.to(device) for k, v in state.modules[name].items()}, what=f"{name} of {config.resume}")
    for name, optimizer in optimizers.items():
        optimizer.load_state_dict(state.optimizers[name])
    log(f"resumed from {config.resume} at step {state.step}")
    return state.step
