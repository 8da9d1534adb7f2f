"""Vanilla GAN losses on a discriminator's logits (BasicSR's ``GANLoss(gan_type='vanilla')``, as
Real-ESRGAN trains its U-Net D on per-pixel logits): binary cross-entropy with logits, averaged
over every logit. Training's adversarial terms and the adaptation's texture critic share them."""

import torch
import torch.nn.functional as F


def generator_gan_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """The SR output should read as real: BCE(fake_logits, 1)."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def discriminator_gan_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake
