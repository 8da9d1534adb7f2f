"""ReDegNet's DegNet: the degradation representation Ω of a (restored, degraded) face pair.

Input: the restored (pseudo-HQ) face and the degraded face, both RGB in [-1, 1] at
``size``², concatenated on channels in that order, (N, 6, size, size). Output: Ω,
(N, style_dim). Module names follow the official ``DegNet`` so ``net_deg_init.pth``
loads strictly.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from f2n.nets.redegnet_blocks import add_encoder_trunk, official_channels


class DegNet(nn.Module):
    def __init__(self, size: int = 256, style_dim: int = 512, channels: Mapping[int, int] | None = None) -> None:
        super().__init__()
        channels = dict(channels or official_channels())
        self.size, self.style_dim = size, style_dim
        self.names = add_encoder_trunk(self, "deg_ecd", 6, size, channels)
        self.final_linear = nn.Sequential(nn.Linear(channels[4] * 4 * 4, style_dim), nn.LeakyReLU(0.2),
                                          nn.Linear(style_dim, style_dim))

    def forward(self, restored: torch.Tensor, degraded: torch.Tensor) -> torch.Tensor:
        x = torch.cat([restored, degraded], dim=1)
        for name in self.names:
            x = getattr(self, name)(x)
        return self.final_linear(x.flatten(1))
