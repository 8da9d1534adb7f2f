"""Building blocks shared by ReDegNet's three networks (Li et al., ECCV 2022,
csxmli2016/ReDegNet): spectrally normalised 3x3 convs with leaky ReLU, the
per-resolution channel table, and the strided encoder trunk of DegNet and SynNet's
encoder. Spectral normalisation is PyTorch's own (``weight_orig``/``weight_u``/
``weight_v`` in the state dict, as in the official files); in eval mode it divides by
the stored estimate of the largest singular value, without a power iteration.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from torch import nn
from torch.nn.utils import spectral_norm


def official_channels(channel_multiplier: int = 1) -> dict[int, int]:
    """Feature channels per resolution of the released networks (StyleGAN2's table)."""
    return {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * channel_multiplier, 128: 128 * channel_multiplier,
            256: 64 * channel_multiplier, 512: 32 * channel_multiplier, 1024: 16 * channel_multiplier}


def sn_conv(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> nn.Conv2d:
    return spectral_norm(nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2))


def sn_conv_act(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """Keys ``0.weight_orig``, ``0.bias``, ``0.weight_u``, ``0.weight_v``."""
    return nn.Sequential(sn_conv(in_channels, out_channels, stride=stride), nn.LeakyReLU(0.2))


def log2_size(size: int) -> int:
    log_size = int(math.log2(size))
    if size < 8 or 2**log_size != size:
        raise ValueError(f"size must be a power of two >= 8, got {size}")
    return log_size


def add_encoder_trunk(module: nn.Module, prefix: str, in_channels: int, size: int,
                      channels: Mapping[int, int]) -> list[str]:
    """``<prefix>0`` (stride 1 at ``size``) then stride-2 convs down to 4x4, as attributes of
    ``module``; returns their names in order."""
    names = [f"{prefix}{index}" for index in range(log2_size(size) - 1)]
    setattr(module, names[0], sn_conv_act(in_channels, channels[size]))
    resolution = size
    for name in names[1:]:
        setattr(module, name, sn_conv_act(channels[resolution], channels[resolution // 2], stride=2))
        resolution //= 2
    return names
