"""U-Net discriminator with spectral norm, as in Real-ESRGAN (``UNetDiscriminatorSN``).

Parameter names match ``RealESRGAN_x4plus_netD.pth`` (under its ``params`` key):
``conv0.{weight,bias}``, ``conv1..conv8.{weight_orig,weight_u,weight_v}`` (spectral norm),
``conv9.{weight,bias}``. The old-style ``torch.nn.utils.spectral_norm`` is used on
purpose: the parametrization API names its tensors differently
(``parametrizations.weight.original``) and would not read the official file.

The output is a per-pixel logit map of the input's size; inputs must be a multiple of 8.
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

LEAKY_SLOPE = 0.2
SIZE_MULTIPLE = 8  # three stride-2 convs down, three x2 upsamplings back


class UNetDiscriminatorSN(nn.Module):
    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, skip_connection: bool = True) -> None:
        super().__init__()
        self.skip_connection = skip_connection
        self.conv0 = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        # encoder: three stride-2 convs
        self.conv1 = spectral_norm(nn.Conv2d(num_feat, num_feat * 2, 4, 2, 1, bias=False))
        self.conv2 = spectral_norm(nn.Conv2d(num_feat * 2, num_feat * 4, 4, 2, 1, bias=False))
        self.conv3 = spectral_norm(nn.Conv2d(num_feat * 4, num_feat * 8, 4, 2, 1, bias=False))
        # decoder: convs after each bilinear x2
        self.conv4 = spectral_norm(nn.Conv2d(num_feat * 8, num_feat * 4, 3, 1, 1, bias=False))
        self.conv5 = spectral_norm(nn.Conv2d(num_feat * 4, num_feat * 2, 3, 1, 1, bias=False))
        self.conv6 = spectral_norm(nn.Conv2d(num_feat * 2, num_feat, 3, 1, 1, bias=False))
        # two extra convs and the logit head
        self.conv7 = spectral_norm(nn.Conv2d(num_feat, num_feat, 3, 1, 1, bias=False))
        self.conv8 = spectral_norm(nn.Conv2d(num_feat, num_feat, 3, 1, 1, bias=False))
        self.conv9 = nn.Conv2d(num_feat, 1, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        if height % SIZE_MULTIPLE or width % SIZE_MULTIPLE:
            raise ValueError(f"UNetDiscriminatorSN input must be a multiple of {SIZE_MULTIPLE}, got {height}x{width}")
        x0 = F.leaky_relu(self.conv0(x), LEAKY_SLOPE)
        x1 = F.leaky_relu(self.conv1(x0), LEAKY_SLOPE)
        x2 = F.leaky_relu(self.conv2(x1), LEAKY_SLOPE)
        x3 = F.leaky_relu(self.conv3(x2), LEAKY_SLOPE)
        x4 = F.leaky_relu(self.conv4(_up2(x3)), LEAKY_SLOPE)
        if self.skip_connection:
            x4 = x4 + x2
        x5 = F.leaky_relu(self.conv5(_up2(x4)), LEAKY_SLOPE)
        if self.skip_connection:
            x5 = x5 + x1
        x6 = F.leaky_relu(self.conv6(_up2(x5)), LEAKY_SLOPE)
        if self.skip_connection:
            x6 = x6 + x0
        out = F.leaky_relu(self.conv7(x6), LEAKY_SLOPE)
        out = F.leaky_relu(self.conv8(out), LEAKY_SLOPE)
        return self.conv9(out)


def _up2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
