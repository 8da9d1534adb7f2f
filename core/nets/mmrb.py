"""The MMRB face restorer (Hu et al., "Enhancing Quality of Pose-varied Face Restoration with
Local Weak Feature Sensing and GAN Prior"): an asymmetric codec of mixed multi-path residual
blocks (MMRB) feeding a StyleGAN2 prior — f2n's GPEN generator, so GPEN-BFR weights
initialise it.

* ``MMRB`` (paper eqs. 4–10): the input's channels split in two halves; a 3×3 and a 5×5
  conv with PReLU; both outputs concatenated and fed to a second 3×3 / 5×5 pair; their
  outputs concatenated and fused by a 1×1 conv with PReLU; added to the input.
* ``MMRBRestorer``: the encoder (GPEN's ``ecd{i}`` convs, each followed by
  ``encoder_blocks`` MMRBs) maps the face to the latent code like GPEN (``final_linear``);
  the decoder climbs back from 4×4 with skip connections from the encoder, one MMRB fewer
  per scale than the encoder; its feature map at every scale feeds the generator's noise
  branches (GPEN feeds the encoder's) and a 1×1 ``to_rgb`` gives the multi-scale
  reconstructions that the training's L1 pyramid loss compares with the target.

The paper gives neither the MMRB count per scale nor the decoder's up-sampling; here the
decoder has ``decoder_blocks`` (default 1) MMRBs per scale, up-samples bilinearly and
adds the encoder's feature of the same scale. Input and output are RGB in [−1, 1].
"""

import math
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

from f2n.nets.gpen import ConvLayer, EqualLinear, Generator, _channels


class MMRB(nn.Module):
    """Mixed multi-path residual block. ``zero_fusion`` starts the 1×1 fusion at zero so the
    block is the identity until trained: inserted into a GPEN-initialised codec, it then
    leaves GPEN's features untouched at the start of fine-tuning."""

    def __init__(self, channels: int, zero_fusion: bool = True) -> None:
        super().__init__()
        if channels % 2:
            raise ValueError(f"an MMRB splits its input in two halves, got an odd channel count {channels}")
        half = channels // 2
        self.path3 = nn.Sequential(nn.Conv2d(half, half, 3, padding=1), nn.PReLU(half))
        self.path5 = nn.Sequential(nn.Conv2d(half, half, 5, padding=2), nn.PReLU(half))
        self.mix3 = nn.Sequential(nn.Conv2d(channels, half, 3, padding=1), nn.PReLU(half))
        self.mix5 = nn.Sequential(nn.Conv2d(channels, half, 5, padding=2), nn.PReLU(half))
        self.fuse = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.PReLU(channels))
        if zero_fusion:
            nn.init.zeros_(self.fuse[0].weight)
            nn.init.zeros_(self.fuse[0].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = x.chunk(2, dim=1)
        shared = torch.cat([self.path3(first), self.path5(second)], dim=1)  # eqs. 5-6
        mixed = torch.cat([self.mix3(shared), self.mix5(shared)], dim=1)  # eqs. 7-8
        return x + self.fuse(mixed)  # eqs. 9-10


class MMRBRestorer(nn.Module):
    """Defaults are GPEN-BFR-512's generator (size 512, channel multiplier 2, narrow 1)."""

    def __init__(self, size: int = 512, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: int = 2,
                 narrow: float = 1.0, decoder_blocks: int = 1) -> None:
        super().__init__()
        if size < 8 or size & (size - 1):
            raise ValueError(f"MMRB restorer size must be a power of two >= 8, got {size}")
        if decoder_blocks < 0:
            raise ValueError(f"decoder_blocks must be >= 0, got {decoder_blocks}")
        channels = _channels(channel_multiplier, narrow)
        self.size = size
        self.hyperparameters = {"size": size, "style_dim": style_dim, "n_mlp": n_mlp,
                                "channel_multiplier": channel_multiplier, "narrow": narrow,
                                "decoder_blocks": decoder_blocks}  # what the restorer file records
        self.resolutions = [size >> index for index in range(int(math.log2(size)) - 1)]  # size ... 4
        encoder_blocks = decoder_blocks + 1  # the paper's asymmetry: one more MMRB per scale in the encoder
        for index, resolution in enumerate(self.resolutions):
            first = (ConvLayer(3, channels[size], 1) if index == 0
                     else ConvLayer(channels[resolution * 2], channels[resolution], 3, downsample=True))
            self.add_module(f"ecd{index}", nn.Sequential(first, *[MMRB(channels[resolution])
                                                                  for _ in range(encoder_blocks)]))
        self.final_linear = nn.Sequential(EqualLinear(channels[4] * 4 * 4, style_dim, activate=True))
        climbing = list(reversed(self.resolutions))  # 4 ... size
        # up[i] takes the decoder from climbing[i] to climbing[i + 1] (after a bilinear x2).
        self.up = nn.ModuleList(nn.Sequential(nn.Conv2d(channels[low], channels[high], 3, padding=1), nn.LeakyReLU(0.2))
                                for low, high in pairwise(climbing))
        self.decoder = nn.ModuleList(nn.Sequential(*[MMRB(channels[resolution]) for _ in range(decoder_blocks)])
                                     for resolution in climbing)
        self.to_rgb = nn.ModuleList(nn.Conv2d(channels[resolution], 3, 1) for resolution in climbing)
        self.generator = Generator(size, style_dim, n_mlp, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.restore(x)[0]

    def restore(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(restored face, decoder reconstructions from 4×4 up to the full size)."""
        if x.shape[-2:] != (self.size, self.size):
            raise ValueError(f"the MMRB restorer expects {self.size}x{self.size} faces, got {tuple(x.shape[-2:])}")
        skips = []
        for index in range(len(self.resolutions)):
            x = getattr(self, f"ecd{index}")(x)
            skips.append(x)
        style = self.final_linear(x.flatten(1))
        features, reconstructions = [], []
        for index, skip in enumerate(reversed(skips)):
            if index:
                x = self.up[index - 1](F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)) + skip
            x = self.decoder[index](x)
            features.append(x)
            reconstructions.append(self.to_rgb[index](x))
        # The generator's noise branches: 4×4 once, every other scale twice (its two StyledConvs).
        noise = [feature for feature in features for _ in range(2)][1:]
        return self.generator(style, noise), reconstructions
