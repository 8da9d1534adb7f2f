"""The frozen networks behind the adaptation's texture critic and perceptual term (issue 28):
Real-ESRGAN x4plus's U-Net discriminator and torchvision's VGG-19, both from the weight registry
and loaded only when an objective asks for them. They only shape the inner loop's loss: θ′ stays
plain RRDBNet weights, so every engine takes it.

The recipe is Real-ESRGAN's own fine-tuning (``options/finetune_realesrgan_x4plus.yml``): a
vanilla GAN loss on the U-Net D's per-pixel logits at weight 0.1, and BasicSR's
``PerceptualLoss`` on VGG-19 features before their ReLU (conv1_2 … conv5_4 weighted 0.1, 0.1, 1,
1, 1), L1, ImageNet-normalised [0, 1] input, no style term, at weight 1."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import remove_spectral_norm

from f2n.errors import WeightsError
from f2n.gan_loss import generator_gan_loss
from f2n.nets.discriminator import SIZE_MULTIPLE
from f2n.vgg_perceptual import VGG19_CONVS, PerceptualStyle
from f2n.weights import load_network, load_state_dict_file, weight_path
from f2n.weights.loss_networks import vgg19_features

CRITIC_WEIGHTS = "realesrgan-x4plus-netd"  # registry names
PERCEPTUAL_WEIGHTS = "vgg19"
PERCEPTUAL_LAYERS = {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}
CRITIC_WEIGHT = 0.1  # Real-ESRGAN's gan_opt loss_weight
PERCEPTUAL_WEIGHT = 1.0  # its perceptual_weight (beside an L1 of weight 1)


@dataclass(frozen=True, eq=False)  # compared by identity: the inner loop's compiled step is cached per instance
class LossNetworks:
    """The frozen loss networks an objective needs (None: not loaded)."""

    critic: nn.Module | None = None  # the U-Net D, spectral norm folded into plain weights
    perceptual: PerceptualStyle | None = None  # VGG-19 features with Real-ESRGAN's layer weights

    def critic_loss(self, *outputs: torch.Tensor) -> torch.Tensor:
        """BCE-with-logits(D(x), 1) averaged over every per-pixel logit of every batch in
        ``outputs`` (SR outputs in [0, 1]), each cropped to D's size multiple."""
        if self.critic is None:
            raise ValueError("no critic loaded (load_loss_networks(critic=True))")
        logits = [self.critic(_crop(x)).flatten() for x in outputs]
        return generator_gan_loss(torch.cat(logits))

    def perceptual_loss(self, rendered: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Real-ESRGAN's perceptual loss of ``rendered`` toward ``target`` (both in [0, 1])."""
        if self.perceptual is None:
            raise ValueError("no VGG-19 loaded (load_loss_networks(perceptual=True))")
        return self.perceptual.perceptual(rendered, target)


def load_loss_networks(*, critic: bool = False, perceptual: bool = False, device: str = "cpu") -> LossNetworks:
    """The networks asked for, frozen, in eval mode on ``device``, from the registry files under
    ``$F2N_HOME``; a missing file is one WeightsError line naming the entry and its command."""
    disc = frozen_critic(_registry_file(CRITIC_WEIGHTS, "the texture critic")).to(device) if critic else None
    vgg = None
    if perceptual:
        features = vgg19_features(_registry_file(PERCEPTUAL_WEIGHTS, "the perceptual term"),
                                  through=max(VGG19_CONVS[name] for name in PERCEPTUAL_LAYERS))
        vgg = PerceptualStyle(features, PERCEPTUAL_LAYERS).to(device).eval().requires_grad_(False)
    return LossNetworks(disc, vgg)


def frozen_critic(path: Path) -> nn.Module:
    """The U-Net discriminator in ``path`` with its spectral norm folded in: the weights its eval
    mode computes (W / σ from the stored u, v), as plain tensors, so no hook rewrites them on
    every call and threads can share it. No gradient reaches its parameters."""
    _, disc = load_network(load_state_dict_file(path), path, expected="unet-discriminator")
    for module in disc.modules():
        if hasattr(module, "weight_orig"):
            remove_spectral_norm(module)
    return disc.eval().requires_grad_(False)


def _registry_file(name: str, what: str) -> Path:
    try:
        return weight_path(name)
    except WeightsError as error:
        raise WeightsError(f"{what} needs the registry's {name!r}: {error}; "
                           f"with a connection, 'f2n-models fetch {name}' downloads it") from None


def _crop(images: torch.Tensor) -> torch.Tensor:
    height, width = images.shape[-2:]
    return images[..., : height - height % SIZE_MULTIPLE, : width - width % SIZE_MULTIPLE]
