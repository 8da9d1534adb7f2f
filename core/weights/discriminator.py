"""Real-ESRGAN's U-Net discriminator (spectral norm): recognise, read its width, load."""

from __future__ import annotations

from pathlib import Path

import torch

from f2n.errors import WeightsError
from f2n.nets.discriminator import UNetDiscriminatorSN
from f2n.weights.checkpoint import load_into


def is_unet_discriminator(state: dict[str, torch.Tensor]) -> bool:
    return "conv0.weight" in state and "conv9.weight" in state and any(key.endswith("weight_orig") for key in state)


def load_discriminator(state: dict[str, torch.Tensor], path: Path) -> UNetDiscriminatorSN:
    """A U-Net discriminator in eval mode whose input channels and width are read from ``conv0.weight``."""
    if "conv0.weight" not in state:
        raise WeightsError(f"{path} has no conv0.weight, expected a Real-ESRGAN U-Net discriminator")
    # Built on the CPU: on the meta device spectral_norm's init takes seconds of decompositions.
    disc = UNetDiscriminatorSN(num_in_ch=state["conv0.weight"].shape[1], num_feat=state["conv0.weight"].shape[0])
    load_into(disc, state, what=f"discriminator weights {path}")
    return disc.eval()
