"""The two definitions of MetaF2N's inner loop that per-photo adaptation
(:mod:`f2n.runtime.adapt`, :mod:`f2n.runtime.face.stage`) and meta-training
(:mod:`f2n.training.maml`) share, so the loop a checkpoint was trained with is the
loop it is adapted with."""

import torch
import torch.nn.functional as F

from f2n.tf1_resize import resize_bicubic_tf1


def masked_l1(output: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Inner-loop loss mean(m · |f(x) − y|) (MetaF2N eq. 5); ``weight`` (N, 1, H, W)
    broadcasts over the channels."""
    return (weight * (output - target).abs()).mean()


def masknet_lq_input(lq: torch.Tensor, size: tuple[int, int], resize: str = "bicubic") -> torch.Tensor:
    """MaskNet's LQ input: the LQ patch upsampled to the target's size. ``bicubic`` (what
    f2n-train uses): PyTorch's, clamped to [0, 1]; ``tf1-bicubic`` (what the official
    MetaF2N MaskNet was trained and tested with): TF1's legacy resize, not clamped."""
    if resize == "tf1-bicubic":
        return resize_bicubic_tf1(lq, size)
    if resize != "bicubic":
        raise ValueError(f"MaskNet LQ resize must be bicubic or tf1-bicubic, got {resize!r}")
    return F.interpolate(lq, size=size, mode="bicubic", align_corners=False).clamp(0, 1)


def gaussian_lowpass(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """``image`` (N, C, H, W) blurred by a Gaussian of ``sigma`` pixels (separable, reflected
    edges, kernel cut at 3σ); ``sigma`` 0 returns ``image``."""
    if sigma <= 0:
        return image
    radius = max(1, min(int(3 * sigma + 0.5), min(image.shape[-2:]) - 1))
    offsets = torch.arange(-radius, radius + 1, device=image.device, dtype=image.dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = image.shape[1]
    padded = F.pad(image, (radius, radius, radius, radius), mode="reflect")
    rows = F.conv2d(padded, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(rows, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def high_band(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """What a Gaussian low-pass of ``sigma`` pixels removes: the detail a GAN network draws."""
    return image - gaussian_lowpass(image, sigma)


def lowband_masked_l1(output: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, sigma: float) -> torch.Tensor:
    """mean(m · |G_σ * (f(x) − y)|): fidelity on tone, noise level and blur response only, so the
    high band (texture a face prior invents and the base network draws) is not averaged away.
    ``sigma`` 0 is the plain masked L1."""
    return masked_l1(gaussian_lowpass(output - target, sigma), torch.zeros_like(target), weight)
