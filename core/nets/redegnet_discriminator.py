"""ReDegNet's conditional discriminator (``ReDegSNDiscriminator`` of the official training code,
``redeg/archs/redeg_arch.py``): judges a degraded face given its clean face and the degradation
representation Ω it should carry. Spectrally normalised residual blocks over the 6-channel
(degraded, clean) pair, average-pooled to a vector, concatenated with Ω, two linear layers.

Module names follow the official code, including its convs registered twice (as ``conv1`` and
inside ``model``), so its state dicts load strictly. Input RGB in [−1, 1]. The official code
reshapes the pooled features to 512 wide, which only its 256² and 512² configurations give; here
the width follows ``dim`` and ``size`` (any power of two >= 32).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn.utils import spectral_norm


class SNFirstResBlockDiscriminator(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 1, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1)
        self.bypass_conv = nn.Conv2d(in_channels, out_channels, 1, 1, padding=0)
        nn.init.xavier_uniform_(self.conv1.weight, 1.0)
        nn.init.xavier_uniform_(self.conv2.weight, 1.0)
        nn.init.xavier_uniform_(self.bypass_conv.weight, np.sqrt(2))
        self.model = nn.Sequential(spectral_norm(self.conv1), nn.LeakyReLU(0.2), spectral_norm(self.conv2),
                                   nn.AvgPool2d(2))
        self.bypass = nn.Sequential(nn.AvgPool2d(2), spectral_norm(self.bypass_conv))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) + self.bypass(x)


class SNResBlockDiscriminator(nn.Module):
    """The strided (x1/2) residual block; the official stride-1 variant is never built."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 1, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1)
        nn.init.xavier_uniform_(self.conv1.weight, 1.0)
        nn.init.xavier_uniform_(self.conv2.weight, 1.0)
        self.model = nn.Sequential(nn.ReLU(), spectral_norm(self.conv1), nn.ReLU(), spectral_norm(self.conv2),
                                   nn.AvgPool2d(2, stride=2, padding=0))
        self.bypass_conv = nn.Conv2d(in_channels, out_channels, 1, 1, padding=0)
        nn.init.xavier_uniform_(self.bypass_conv.weight, np.sqrt(2))
        self.bypass = nn.Sequential(spectral_norm(self.bypass_conv), nn.AvgPool2d(2, stride=2, padding=0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) + self.bypass(x)


class NScaleSNDiscriminator(nn.Module):
    def __init__(self, dim: int = 64, size: int = 256) -> None:
        super().__init__()
        if size < 32 or 2 ** int(math.log2(size)) != size:
            raise ValueError(f"size must be a power of two >= 32, got {size}")
        blocks: list[nn.Module] = [SNFirstResBlockDiscriminator(6, dim)]
        width = dim
        for _ in range(int(math.log2(size)) - 4):  # the official 5 - log2(512 / size): down to 8x8
            blocks.append(SNResBlockDiscriminator(width, min(width * 2, 512)))
            width = min(width * 2, 512)
        blocks.append(nn.AvgPool2d(8))
        self.models = nn.Sequential(*blocks)
        self.fc = nn.Linear(width * 2, width)
        nn.init.xavier_uniform_(self.fc.weight, 1.0)
        self.fc = spectral_norm(self.fc)
        self.fc2 = spectral_norm(nn.Linear(width, 1))
        self.width = width

    def forward(self, degraded: torch.Tensor, clean: torch.Tensor, degradation: torch.Tensor) -> torch.Tensor:
        x = self.models(torch.cat([degraded, clean], dim=1)).flatten(1)
        return self.fc2(self.fc(torch.cat([x, degradation], dim=1)))


class ReDegDiscriminator(nn.Module):
    """``degradation`` (Ω) must be as wide as the last block: 512 for the official 256² D and Ω."""

    def __init__(self, size: int = 256, dim: int = 64) -> None:
        super().__init__()
        self.netD = NScaleSNDiscriminator(dim, size)

    def forward(self, degraded: torch.Tensor, clean: torch.Tensor, degradation: torch.Tensor) -> torch.Tensor:
        return self.netD(degraded, clean, degradation)
