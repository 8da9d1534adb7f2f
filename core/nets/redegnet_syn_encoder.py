"""ReDegNet's SynNet encoder: multi-scale content features of a clean (HQ) image.

Input RGB in [-1, 1], (N, 3, size, size). Output: the features coarsest first —
[the 4x4 head (``ecdf``), 4x4, 8x8, ..., size x size] — which the SynNet generator takes
in place of StyleGAN2's noise. Module names follow the official ``SynNetEncoder`` so
``net_synE_init.pth`` loads strictly.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from f2n.nets.redegnet_blocks import add_encoder_trunk, official_channels, sn_conv


class SynResBlock(nn.Module):
    """Two 3x3 convs with a 1x1 skip, no activation after the sum."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = sn_conv(in_channels, in_channels)
        self.conv2 = sn_conv(in_channels, out_channels)
        self.act = nn.LeakyReLU(0.2)
        self.skip = sn_conv(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.act(self.conv1(x))) + self.skip(x)


class SynNetEncoder(nn.Module):
    def __init__(self, size: int = 256, channels: Mapping[int, int] | None = None) -> None:
        super().__init__()
        channels = dict(channels or official_channels())
        self.size = size
        self.names = add_encoder_trunk(self, "ecd", 3, size, channels)
        head = channels[4]
        self.ecdf = nn.Sequential(sn_conv(head, head), nn.LeakyReLU(0.2), SynResBlock(head, head))

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        features = []
        x = image
        for name in self.names:
            x = getattr(self, name)(x)
            features.append(x)
        features.append(self.ecdf(x))
        return features[::-1]
