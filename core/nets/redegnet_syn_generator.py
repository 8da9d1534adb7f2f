"""ReDegNet's SynNet generator: renders a clean image's content features through a
degradation representation Ω, giving the degraded image (RGB in [-1, 1]).

A StyleGAN2-like decoder, but not GPEN's ops: the mapping MLP and the modulations are
plain ``nn.Linear`` (no equalised learning rate), up-sampling is bilinear before the
modulated conv (no transposed conv + blur), every styled conv is followed by a
spectrally normalised conv, the constant input is a conv of the encoder's 4x4 head,
the encoder features are added (not concatenated) only to the first conv of each
resolution, and every ToRGB ends in tanh. Ω drives every layer (one style, no mixing).
Module names follow the official ``SynNetGenerator`` so ``net_synG_init.pth`` loads
strictly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from f2n.nets.gpen import PixelNorm
from f2n.nets.redegnet_blocks import log2_size, official_channels, sn_conv_act


class ModulatedConv2d(nn.Module):
    """Per-sample modulated (and optionally demodulated) conv; ``upsample`` doubles the
    input bilinearly first."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.modulation = nn.Linear(style_dim, in_channels)
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.demodulate, self.upsample = demodulate, upsample

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        weight = self.scale * self.weight * self.modulation(style).view(batch, 1, self.in_channels, 1, 1)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum(dim=(2, 3, 4)) + 1e-8).view(batch, self.out_channels, 1, 1, 1)
        x = x.reshape(1, batch * self.in_channels, height, width)  # one grouped conv for the whole batch
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        out = F.conv2d(x, weight.reshape(-1, self.in_channels, self.kernel_size, self.kernel_size),
                       padding=self.kernel_size // 2, groups=batch)
        return out.reshape(batch, self.out_channels, *out.shape[2:])


class NoiseInjection(nn.Module):
    """Adds the scaled encoder features (SynNet's stand-in for StyleGAN2's noise)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        return x if features is None else x + self.weight * features


class StyledConv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, style_dim: int, upsample: bool = False) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, style_dim, upsample=upsample)
        self.noise = NoiseInjection()
        self.conv2 = sn_conv_act(out_channels, out_channels)

    def forward(self, x: torch.Tensor, style: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        return self.conv2(self.noise(self.conv(x, style), features))


class ToRGB(nn.Module):
    def __init__(self, in_channels: int, style_dim: int, upsample: bool = True) -> None:
        super().__init__()
        self.upsample = upsample
        self.conv = ModulatedConv2d(in_channels, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias
        if skip is not None:
            if self.upsample:
                skip = F.interpolate(skip, scale_factor=2, mode="bilinear", align_corners=False)
            out = out + skip
        return torch.tanh(out)


class ConstantInputSelf(nn.Module):
    """The 4x4 start: a conv of the encoder's head features (not a learned constant)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = sn_conv_act(channels, channels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.conv(features)


class SynNetGenerator(nn.Module):
    def __init__(self, size: int = 256, style_dim: int = 512, n_mlp: int = 8,
                 channels: Mapping[int, int] | None = None) -> None:
        super().__init__()
        channels = dict(channels or official_channels())
        self.size, self.style_dim, self.n_mlp = size, style_dim, n_mlp
        layers: list[nn.Module] = [PixelNorm()]
        for _ in range(n_mlp):
            layers += [nn.Linear(style_dim, style_dim), nn.LeakyReLU(0.2)]
        self.style = nn.Sequential(*layers)
        self.inputself = ConstantInputSelf(channels[4])
        self.conv1 = StyledConv(channels[4], channels[4], style_dim)
        self.to_rgb1 = ToRGB(channels[4], style_dim, upsample=False)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        in_channels = channels[4]
        for log_resolution in range(3, log2_size(size) + 1):
            out_channels = channels[2**log_resolution]
            self.convs.append(StyledConv(in_channels, out_channels, style_dim, upsample=True))
            self.convs.append(StyledConv(out_channels, out_channels, style_dim))
            self.to_rgbs.append(ToRGB(out_channels, style_dim))
            in_channels = out_channels

    def forward(self, degradation: torch.Tensor, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """``degradation``: Ω from DegNet, (N, style_dim); ``features``: SynNetEncoder's output."""
        style = self.style(degradation)
        out = self.conv1(self.inputself(features[0]), style, features[1])
        skip = self.to_rgb1(out, style)
        for index, (up_conv, conv, to_rgb) in enumerate(zip(self.convs[::2], self.convs[1::2], self.to_rgbs)):
            out = conv(up_conv(out, style, features[index + 2]), style, None)
            skip = to_rgb(out, style, skip)
        return skip
