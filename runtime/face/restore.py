"""The tensor side every network prior shares: resize aligned faces to the prior's input
size, map [0, 1] RGB to its value range and colour order, and back."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def to_prior_input(faces: torch.Tensor, size: int, value_range: tuple[float, float], colour_order: str) -> torch.Tensor:
    """(N, 3, S, S) RGB in [0, 1] -> (N, 3, size, size) in the prior's range and channel order."""
    if faces.shape[-1] != size:
        faces = F.interpolate(faces, size=size, mode="bicubic", align_corners=False)
    low, high = value_range
    faces = faces * (high - low) + low
    faces = faces.flip(1) if colour_order == "BGR" else faces
    return faces.contiguous()  # NHWC views stay channels-last through arithmetic; some networks view() them


def from_prior_output(restored: torch.Tensor, face_size: int, value_range: tuple[float, float],
                      colour_order: str) -> torch.Tensor:
    """The inverse of :func:`to_prior_input`, clamped to [0, 1] as the official code clamps."""
    restored = restored.float()
    if colour_order == "BGR":
        restored = restored.flip(1)
    low, high = value_range
    restored = ((restored - low) / (high - low)).clamp(0, 1)
    if restored.shape[-1] != face_size:
        restored = F.interpolate(restored, size=face_size, mode="bicubic", align_corners=False).clamp(0, 1)
    return restored
