"""GPEN's StyleGAN2 discriminator (``GPEN-BFR-512-D.pth``): recognise, read its size and
widths from the shapes, load."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from f2n.errors import WeightsError
from f2n.nets.gpen_discriminator import GPENDiscriminator
from f2n.weights.checkpoint import load_into

RESIDUAL_BLOCK = re.compile(r"^convs\.(\d+)\.conv1\.0\.weight$")


def is_gpen_discriminator(state: dict[str, torch.Tensor]) -> bool:
    return all(key in state for key in ("convs.0.0.weight", "final_conv.0.weight", "final_linear.1.weight"))


def gpen_discriminator_hyperparameters(state: dict[str, torch.Tensor], path: Path) -> dict[str, float]:
    """Size from the number of residual blocks (each halves down to 4×4), narrow from the 4×4
    width, channel multiplier from the full-size width (as GPEN's generator)."""
    try:
        blocks = sum(1 for key in state if RESIDUAL_BLOCK.match(key))
        size = 4 * 2**blocks
        narrow = state["final_linear.0.weight"].shape[0] / 512
        multiplier = round(state["convs.0.0.weight"].shape[0] / (16384 / size * narrow))
    except (KeyError, ZeroDivisionError) as error:
        raise WeightsError(f"{path} is not a GPEN discriminator (cannot read its layout: {error!r})") from None
    return {"size": size, "channel_multiplier": max(multiplier, 1), "narrow": narrow}


def load_gpen_discriminator(state: dict[str, torch.Tensor], path: Path) -> GPENDiscriminator:
    disc = GPENDiscriminator(**gpen_discriminator_hyperparameters(state, path))
    load_into(disc, state, what=f"GPEN discriminator weights {path}")
    return disc.eval()
