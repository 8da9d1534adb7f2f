"""MaskNet f_m of MetaF2N: weighs each pixel of a (LQ face, restored face) pair.

Input is concat(bicubic x4 of the LQ patch, restored patch), 6 channels in [0, 1];
output a 1-channel non-negative weight map of the same size.
"""

import torch
from torch import nn


class MaskNet(nn.Module):
    def __init__(self, in_channels: int = 6, num_feat: int = 64, num_layers: int = 8) -> None:
        super().__init__()
        if num_layers < 2:
            raise ValueError(f"MaskNet needs at least 2 layers, got {num_layers}")
        layers: list[nn.Module] = []
        channels = in_channels
        for index in range(num_layers):
            out_channels = 1 if index == num_layers - 1 else num_feat
            layers += [nn.Conv2d(channels, out_channels, 3, 1, 1), nn.ReLU(inplace=True)]
            channels = out_channels
        self.body = nn.Sequential(*layers)

    def forward(self, lq_upsampled: torch.Tensor, restored: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([lq_upsampled, restored], dim=1))
