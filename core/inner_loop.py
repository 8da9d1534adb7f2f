"""The two definitions of MetaF2N's inner loop that per-photo adaptation
(:mod:`f2n.runtime.adapt`, :mod:`f2n.runtime.face_stage`) and meta-training
(:mod:`f2n.training.maml`) share, so the loop a checkpoint was trained with is the
loop it is adapted with."""

import torch
import torch.nn.functional as F


def masked_l1(output: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Inner-loop loss mean(m · |f(x) − y|) (MetaF2N eq. 5); ``weight`` (N, 1, H, W)
    broadcasts over the channels."""
    return (weight * (output - target).abs()).mean()


def masknet_lq_input(lq: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """MaskNet's LQ input: the LQ patch upsampled bicubically to the target's size, in [0, 1]."""
    return F.interpolate(lq, size=size, mode="bicubic", align_corners=False).clamp(0, 1)
