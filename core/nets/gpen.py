"""GPEN face restorer (Yang et al., CVPR 2021): the ``FullGenerator`` of yangxy/GPEN.

A StyleGAN2 decoder whose per-layer noise is replaced by the features of a
convolutional encoder of the degraded face. Module and parameter names follow the
official code, so GPEN-BFR-512.pth / GPEN-BFR-256.pth load strictly. The CUDA ops of
the original (upfirdn2d, fused leaky ReLU) are written here in plain PyTorch so the
network runs on any device. Input and output are RGB in [-1, 1], (N, 3, size, size).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

_BLUR_KERNEL = (1, 3, 3, 1)


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """StyleGAN2's upsample (zero insertion) -> pad -> FIR filter -> downsample, per channel."""
    if min(pad) < 0:
        raise ValueError(f"upfirdn2d here supports non-negative padding only, got {pad}")
    batch, channels, height, width = x.shape
    if up > 1:
        x = F.pad(x.reshape(batch, channels, height, 1, width, 1), (0, up - 1, 0, 0, 0, up - 1))
        x = x.reshape(batch, channels, height * up, width * up)
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    # A true convolution flips the kernel (index_select, not flip: the ONNX exporter then knows its shape);
    # every channel is filtered alike, as one single-channel image each.
    rows, cols = (torch.arange(size - 1, -1, -1, device=kernel.device) for size in kernel.shape)
    weight = kernel.index_select(0, rows).index_select(1, cols).to(x.dtype)[None, None]
    padded_height, padded_width = x.shape[-2:]
    x = F.conv2d(x.reshape(-1, 1, padded_height, padded_width), weight)
    x = x.reshape(batch, channels, x.shape[-2], x.shape[-1])
    return x[..., ::down, ::down]


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor, negative_slope: float = 0.2,
                     scale: float = math.sqrt(2)) -> torch.Tensor:
    """Bias add + leaky ReLU + gain, StyleGAN2's fused activation."""
    return F.leaky_relu(x + bias.view(1, -1, *([1] * (x.ndim - 2))), negative_slope) * scale


def _blur_kernel(scale: float = 1.0) -> torch.Tensor:
    taps = torch.tensor(_BLUR_KERNEL, dtype=torch.float32)
    kernel = taps[None, :] * taps[:, None]
    return kernel / kernel.sum() * scale


def _channels(channel_multiplier: int, narrow: float) -> dict[int, int]:
    """Feature channels per resolution, as in the official code."""
    base = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * channel_multiplier, 128: 128 * channel_multiplier,
            256: 64 * channel_multiplier, 512: 32 * channel_multiplier, 1024: 16 * channel_multiplier}
    return {size: int(value * narrow) for size, value in base.items()}


class FusedLeakyReLU(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias)


class Blur(nn.Module):
    def __init__(self, pad: tuple[int, int], upsample_factor: int = 1) -> None:
        super().__init__()
        self.register_buffer("kernel", _blur_kernel(upsample_factor**2))
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """x2 upsampling of the RGB skip path."""

    def __init__(self, factor: int = 2) -> None:
        super().__init__()
        self.register_buffer("kernel", _blur_kernel(factor**2))
        self.factor = factor
        spare = len(_BLUR_KERNEL) - factor
        self.pad = ((spare + 1) // 2 + factor - 1, spare // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class EqualConv2d(nn.Module):
    """Conv with the weight scaled at run time (equalised learning rate)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.stride = stride
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, self.stride, self.padding)


class EqualLinear(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activate: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activate:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class ModulatedConv2d(nn.Module):
    """Style-modulated conv, optionally with x2 up-sampling (transposed conv + blur)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1.0)
        if upsample:
            spare = len(_BLUR_KERNEL) - 2 - (kernel_size - 1)
            self.blur = Blur(pad=((spare + 1) // 2 + 1, spare // 2 + 1), upsample_factor=2)
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.demodulate = demodulate
        self.upsample = upsample
        self.padding = kernel_size // 2
        # Plain ints, so that the ONNX exporter knows the modulated kernels' shapes.
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        in_channels, out_channels, k = self.in_channels, self.out_channels, self.kernel_size
        weight = self.scale * self.weight * self.modulation(style).view(batch, 1, in_channels, 1, 1)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum(dim=(2, 3, 4)) + 1e-8).view(batch, out_channels, 1, 1, 1)
        x = x.reshape(1, batch * in_channels, height, width)  # one grouped conv for the whole batch
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(-1, out_channels, k, k)
            out = F.conv_transpose2d(x, weight, stride=2, groups=batch)
            out = self.blur(out.reshape(batch, out_channels, *out.shape[2:]))
        else:
            out = F.conv2d(x, weight.reshape(-1, in_channels, k, k), padding=self.padding,
                           groups=batch)
            out = out.reshape(batch, out_channels, *out.shape[2:])
        return out


class NoiseInjection(nn.Module):
    """GPEN concatenates the scaled encoder features instead of adding random noise."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.weight * noise], dim=1)


class StyledConv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, style_dim: int, upsample: bool = False) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, style_dim, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channels * 2)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, style), noise))


class ToRGB(nn.Module):
    def __init__(self, in_channels: int, style_dim: int, upsample: bool = True) -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample()
        self.conv = ModulatedConv2d(in_channels, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias
        return out if skip is None else out + self.upsample(skip)


class ConstantInput(nn.Module):
    def __init__(self, channels: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)


class ConvLayer(nn.Sequential):
    """[Blur] -> EqualConv2d -> [FusedLeakyReLU], named 0/1/2 as in the official Sequential.
    ``activate=False`` is the official ``ConvLayer(..., activate=False, bias=False)``: a plain
    (blurred) conv, the discriminator's residual skip."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, downsample: bool = False,
                 activate: bool = True) -> None:
        layers: list[nn.Module] = []
        if downsample:
            spare = len(_BLUR_KERNEL) - 2 + (kernel_size - 1)
            layers.append(Blur(pad=((spare + 1) // 2, spare // 2)))
        layers.append(EqualConv2d(in_channels, out_channels, kernel_size, stride=2 if downsample else 1,
                                  padding=0 if downsample else kernel_size // 2, bias=False))
        if activate:
            layers.append(FusedLeakyReLU(out_channels))
        super().__init__(*layers)


class Generator(nn.Module):
    """StyleGAN2 synthesis network with feature-concatenating noise layers."""

    def __init__(self, size: int, style_dim: int, n_mlp: int, channels: dict[int, int], lr_mlp: float = 0.01) -> None:
        super().__init__()
        self.style = nn.Sequential(PixelNorm(), *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activate=True)
                                                  for _ in range(n_mlp)])
        self.input = ConstantInput(channels[4])
        self.conv1 = StyledConv(channels[4], channels[4], style_dim)
        self.to_rgb1 = ToRGB(channels[4] * 2, style_dim, upsample=False)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        in_channels = channels[4]
        for log_res in range(3, int(math.log2(size)) + 1):
            out_channels = channels[2**log_res]
            self.convs.append(StyledConv(in_channels * 2, out_channels, style_dim, upsample=True))
            self.convs.append(StyledConv(out_channels * 2, out_channels, style_dim))
            self.to_rgbs.append(ToRGB(out_channels * 2, style_dim))
            in_channels = out_channels

    def forward(self, style: torch.Tensor, noise: list[torch.Tensor]) -> torch.Tensor:
        """``noise``: encoder features at 4, 8, 8, 16, 16, ... size, size (one per StyledConv)."""
        latent = self.style(style)  # one style for every layer: GPEN uses no style mixing
        out = self.conv1(self.input(latent.shape[0]), latent, noise[0])
        skip = self.to_rgb1(out, latent)
        for index, to_rgb in enumerate(self.to_rgbs):
            out = self.convs[2 * index](out, latent, noise[2 * index + 1])
            out = self.convs[2 * index + 1](out, latent, noise[2 * index + 2])
            skip = to_rgb(out, latent, skip)
        return skip


class GPEN(nn.Module):
    """GPEN's FullGenerator. Defaults are those of GPEN-BFR-512; GPEN-BFR-256 is ``size=256,
    channel_multiplier=1, narrow=0.5`` (see :data:`f2n.weights.gpen.GPEN_BFR`)."""

    def __init__(self, size: int = 512, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: int = 2,
                 narrow: float = 1.0) -> None:
        super().__init__()
        if size not in (64, 128, 256, 512, 1024):
            raise ValueError(f"GPEN size must be a power of two from 64 to 1024, got {size}")
        channels = _channels(channel_multiplier, narrow)
        self.size = size
        self.num_encoders = int(math.log2(size)) - 1
        self.generator = Generator(size, style_dim, n_mlp, channels)
        self.ecd0 = nn.Sequential(ConvLayer(3, channels[size], 1))
        for index in range(1, self.num_encoders):
            resolution = size >> index
            self.add_module(f"ecd{index}", nn.Sequential(ConvLayer(channels[resolution * 2], channels[resolution], 3,
                                                                   downsample=True)))
        self.final_linear = nn.Sequential(EqualLinear(channels[4] * 4 * 4, style_dim, activate=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.size, self.size):
            raise ValueError(f"GPEN-{self.size} expects {self.size}x{self.size} faces, got {tuple(x.shape[-2:])}")
        features = []
        for index in range(self.num_encoders):
            x = getattr(self, f"ecd{index}")(x)
            features.append(x)
        style = self.final_linear(x.flatten(1))
        # Coarse to fine, each resolution twice (two StyledConvs), minus the first 4x4 copy.
        noise = [feature for feature in reversed(features) for _ in range(2)][1:]
        return self.generator(style, noise)
