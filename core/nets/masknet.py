"""MaskNet f_m of MetaF2N: weighs each pixel of a (LQ face, restored face) pair.

Input is concat(bicubic x4 of the LQ patch, restored patch), 6 channels, RGB;
output a 1-channel non-negative weight map of the same size. Eight 3x3 convs, ReLU after
each one including the last: the official MetaF2N MaskNet's layout. ``lq_resize`` says
which bicubic makes the LQ input (:func:`f2n.inner_loop.masknet_lq_input`): a MaskNet
is trained on one of them and should be run with it.
"""

import torch
from torch import nn

LQ_RESIZES = ("bicubic", "tf1-bicubic")


class MaskNet(nn.Module):
    def __init__(self, in_channels: int = 6, num_feat: int = 64, num_layers: int = 8, lq_resize: str = "bicubic") -> None:
        super().__init__()
        if num_layers < 2:
            raise ValueError(f"MaskNet needs at least 2 layers, got {num_layers}")
        if lq_resize not in LQ_RESIZES:
            raise ValueError(f"MaskNet lq_resize must be one of {LQ_RESIZES}, got {lq_resize!r}")
        self.lq_resize = lq_resize
        layers: list[nn.Module] = []
        channels = in_channels
        for index in range(num_layers):
            out_channels = 1 if index == num_layers - 1 else num_feat
            layers += [nn.Conv2d(channels, out_channels, 3, 1, 1), nn.ReLU(inplace=True)]
            channels = out_channels
        self.body = nn.Sequential(*layers)

    def forward(self, lq_upsampled: torch.Tensor, restored: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([lq_upsampled, restored], dim=1))
