"""One step of ``f2n-train --method redegnet``: the official ``redeg_model.py`` step in two updates.

1. :func:`redeg_update`, DegNet and SynNet: Ω of the real face pair, of the synthetic face pair and
   of the synthetic natural pair; the generator renders the real face through its own Ω and — on
   the *switch* — the natural crop through the synthetic face's Ω and the face crop through the
   natural's, else each through its own. Losses at the official weights (``options/train_redeg.yml``):
   reconstruction L1 × 10 over the three renderings, averaged; perceptual 0.2 and style 160 (÷ 3)
   on VGG-19 conv1_2…conv5_4 (layer weights 2, 1.2, 0.6, 0.2, 0.1), averaged; degradation
   consistency 10 × (L1 × 10) between the synthetic natural and face Ω; the disentangling term
   4 / (L1 × 10 between the real and the synthetic face Ω + 1e-7); the conditional hinge term
   (1e-2) on the real face's rendering, judged by ``ReDegDiscriminator`` given the clean face and
   Ω, which then takes its own hinge step (the real LQ face against that rendering).
2. :func:`sr_update`, F2N-ESRGAN ("Training F2N-ESRGAN Again with Synthetic degradation from Face
   Pairs"): SynNet — after step 1's update, without gradients — renders a fresh HQ natural crop
   through the real face's Ω of step 1 (noise added in 4 steps of 10), which is resized to a
   quarter (bilinear or bicubic, drawn per step) and super-resolved by θ; losses L1 × 1,
   perceptual 1 and style 0.1 on VGG-19 (layer weights 0.1, 0.1, 1, 1, 1) and vanilla GAN 0.1
   against the USM-sharpened crop, judged by a U-Net D; then the D's own vanilla step (real: the
   un-sharpened crop). θ works on [−1, 1] images, as every official network.

The official option ``train_with_otherDegs`` (off by default) would add a θ step on BSRGAN /
Real-ESRGAN degraded crops before step 2; it is left out, as the default does. Gradients are
averaged over the workers before each optimiser step (a no-op alone)."""

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from f2n.gan_loss import discriminator_gan_loss, generator_gan_loss
from f2n.nets import RRDBNet
from f2n.nets.discriminator import UNetDiscriminatorSN
from f2n.nets.redegnet_discriminator import ReDegDiscriminator
from f2n.runtime.redegnet import ReDegNets
from f2n.training.distributed import backward_and_step
from f2n.vgg_perceptual import PerceptualStyle

SWITCH_PROBABILITY = 0.8  # redeg_model.py: `random.random() > 0.2`
SR_RESIZE_MODES = ("bilinear", "bicubic")
REDEG_VGG_LAYERS = {"conv1_2": 2.0, "conv2_2": 1.2, "conv3_4": 0.6, "conv4_4": 0.2, "conv5_4": 0.1}
SR_VGG_LAYERS = {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}


@dataclass(frozen=True)
class ReDegLosses:
    pixel: float = 10.0  # pixel_syn_opt.loss_weight (× syn_pixel_lambda 1)
    perceptual: float = 0.2  # perceptual_syn_opt.perceptual_weight; 0 switches perceptual and style off
    style: float = 160.0  # perceptual_syn_opt.style_weight
    same_degradation: float = 10.0  # syn_samedeg_lambda (on an L1 already × 10)
    contrastive: float = 4.0  # contrastive_lambda
    adversarial: float = 1e-2  # gan_syn_opt.loss_weight (hinge); 0 trains without the discriminator


@dataclass(frozen=True)
class SRLosses:
    pixel: float = 1.0  # pixel_opt.loss_weight
    perceptual: float = 1.0  # perceptual_opt.perceptual_weight; 0 switches perceptual and style off
    style: float = 0.1  # perceptual_opt.style_weight
    adversarial: float = 0.1  # gan_opt.loss_weight (vanilla)


@dataclass
class ReDegModels:
    """The trained networks; ``sr`` and ``sr_disc`` (F2N-ESRGAN θ and its D) are None when θ is not trained."""

    nets: ReDegNets
    disc: ReDegDiscriminator | None
    sr: RRDBNet | None = None
    sr_disc: UNetDiscriminatorSN | None = None

    def modules(self) -> dict[str, nn.Module]:
        """The trained modules by name (the names of their optimisers and checkpoint entries)."""
        named = {"degnet": self.nets.degnet, "encoder": self.nets.encoder, "generator": self.nets.generator,
                 "disc": self.disc, "sr": self.sr, "sr_disc": self.sr_disc}
        return {name: module for name, module in named.items() if module is not None}


@dataclass(frozen=True)
class Criteria:
    """Loss weights of both updates, and their VGG terms (None: switched off)."""

    redeg: ReDegLosses = field(default_factory=ReDegLosses)
    sr: SRLosses = field(default_factory=SRLosses)
    redeg_perceptual: PerceptualStyle | None = None
    sr_perceptual: PerceptualStyle | None = None


@dataclass(frozen=True)
class StepDraws:
    """The step's random choices that are not images (those are in the batch)."""

    switch: bool
    sr_resize: str = "bicubic"


def train_step(models: ReDegModels, optimizers: dict[str, torch.optim.Optimizer], batch: dict[str, torch.Tensor],
               criteria: Criteria, draws: StepDraws) -> dict[str, float]:
    """Both updates; returns the loss terms by name."""
    record, face_real_deg = redeg_update(models, optimizers, batch, criteria, draws.switch)
    if models.sr is not None:
        record.update(sr_update(models, optimizers, batch, face_real_deg, criteria, draws.sr_resize))
    return record


def redeg_update(models: ReDegModels, optimizers: dict[str, torch.optim.Optimizer], batch: dict[str, torch.Tensor],
                 criteria: Criteria, switch: bool) -> tuple[dict[str, float], torch.Tensor]:
    """One update of DegNet and SynNet, then one of their discriminator. Returns the loss terms and
    the real face pair's Ω (detached) that θ's update renders through."""
    nets, disc, losses = models.nets, models.disc, criteria.redeg
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
    if criteria.redeg_perceptual is not None:
        pairs = [criteria.redeg_perceptual(got, want) for got, want in renders.values()]
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
    backward_and_step([optimizers[name] for name in ("degnet", "encoder", "generator")], total)
    record = {name: float(value.detach()) for name, value in terms.items()}
    record["total"] = float(total.detach())
    if disc is not None:  # hinge: real LQ faces above +1, renderings below −1 (fake judged first, as the official)
        condition = (batch["face_hq"], face_real_deg.detach())
        fake_logits = disc(fake.detach(), *condition)
        d_loss = F.relu(1 - disc(batch["face_lq"], *condition)).mean() + F.relu(1 + fake_logits).mean()
        backward_and_step([optimizers["disc"]], d_loss)
        record["disc"] = float(d_loss.detach())
    return record, face_real_deg.detach()


def sr_update(models: ReDegModels, optimizers: dict[str, torch.optim.Optimizer], batch: dict[str, torch.Tensor],
              face_real_deg: torch.Tensor, criteria: Criteria, resize: str) -> dict[str, float]:
    """One update of θ on SynNet's rendering of ``sr_hq`` through ``face_real_deg``, then one of its D."""
    nets, sr, sr_disc, losses = models.nets, models.sr, models.sr_disc, criteria.sr
    with torch.no_grad():  # SynNet only makes θ's input
        rendered = nets.generator(face_real_deg, nets.encoder(batch["sr_hq"]))
        if "sr_noise" in batch:  # the official adds it "for avoiding hidden information"
            rendered = (rendered + batch["sr_noise"]).clamp(-1, 1)
    side = rendered.shape[-1] // 4
    output = sr(F.interpolate(rendered, size=(side, side), mode=resize, align_corners=False))
    target = batch["sr_target"]
    sr_disc.requires_grad_(False)
    terms = {"sr_pixel": losses.pixel * F.l1_loss(output, target)}
    if criteria.sr_perceptual is not None:
        perceptual, style = criteria.sr_perceptual(output, target)
        terms.update(sr_perceptual=losses.perceptual * perceptual, sr_style=losses.style * style)
    terms["sr_adversarial"] = losses.adversarial * generator_gan_loss(sr_disc(output))
    total = sum(terms.values())
    backward_and_step([optimizers["sr"]], total)
    sr_disc.requires_grad_(True)
    fake_logits = sr_disc(output.detach())  # fake judged first, as the official
    d_loss = discriminator_gan_loss(sr_disc(batch["sr_hq"]), fake_logits)
    backward_and_step([optimizers["sr_disc"]], d_loss)
    record = {name: float(value.detach()) for name, value in terms.items()}
    record.update(sr_total=float(total.detach()), sr_disc=float(d_loss.detach()))
    return record


