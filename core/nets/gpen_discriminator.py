"""GPEN's StyleGAN2 discriminator (``Discriminator`` of yangxy/GPEN), the global
discriminator of GPEN training and of the MMRB restorer (Hu et al.), which fine-tunes it
from ``GPEN-BFR-512-D.pth`` with its first convolutions frozen (FreezeD).

Module and parameter names follow the official code so the official file loads strictly:
``convs.0`` (1×1 from RGB), ``convs.1..`` residual blocks halving the resolution down to
4×4, a minibatch-stddev feature, ``final_conv`` and ``final_linear``. Output: one logit
per image, (N, 1).
"""

import math

import torch
from torch import nn

from f2n.nets.gpen import ConvLayer, EqualLinear, _channels


class ResBlock(nn.Module):
    """Two 3×3 convs (the second halving the size) plus a blurred 1×1 skip, averaged by √2."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=True)
        self.skip = ConvLayer(in_channels, out_channels, 1, downsample=True, activate=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


class GPENDiscriminator(nn.Module):
    """Defaults are GPEN-BFR-512-D's (size 512, channel multiplier 2, narrow 1)."""

    def __init__(self, size: int = 512, channel_multiplier: int = 2, narrow: float = 1.0) -> None:
        super().__init__()
        if size < 8 or size & (size - 1):
            raise ValueError(f"discriminator size must be a power of two >= 8, got {size}")
        channels = _channels(channel_multiplier, narrow)
        self.size = size
        layers: list[nn.Module] = [ConvLayer(3, channels[size], 1)]
        resolution = size
        while resolution > 4:
            layers.append(ResBlock(channels[resolution], channels[resolution // 2]))
            resolution //= 2
        self.convs = nn.Sequential(*layers)
        self.final_conv = ConvLayer(channels[4] + 1, channels[4], 3)
        self.final_linear = nn.Sequential(EqualLinear(channels[4] * 4 * 4, channels[4], activate=True),
                                          EqualLinear(channels[4], 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.size, self.size):
            raise ValueError(f"the discriminator takes {self.size}x{self.size} images, got {tuple(x.shape[-2:])}")
        out = self.convs(x)
        out = torch.cat([out, minibatch_stddev(out)], dim=1)
        return self.final_linear(self.final_conv(out).flatten(1))

    def conv_layers(self) -> list[ConvLayer]:
        """Every conv layer (conv weight and its activation bias) in order, each block's skip
        after its two convs: what FreezeD counts."""
        return [module for module in self.modules() if isinstance(module, ConvLayer)]


def minibatch_stddev(features: torch.Tensor) -> torch.Tensor:
    """StyleGAN2's minibatch standard deviation as GPEN computes it: one group of the whole
    batch, the mean std over channels and pixels, broadcast as one extra feature map."""
    batch, _, height, width = features.shape
    std = torch.sqrt(features.var(0, unbiased=False) + 1e-8).mean()
    return std.view(1, 1, 1, 1).expand(batch, 1, height, width)
