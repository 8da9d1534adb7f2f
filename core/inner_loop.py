"""The two definitions of MetaF2N's inner loop that per-photo adaptation
(:mod:`f2n.runtime.adapt`, :mod:`f2n.runtime.face_stage`) and meta-training
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
