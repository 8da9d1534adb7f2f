"""GPEN (yangxy/GPEN ``FullGenerator``): recognise a state dict, read its hyperparameters
from key names and tensor shapes, load it.

The official files: GPEN-BFR-512 is size 512, channel multiplier 2, narrow 1 (71.0 M
parameters); GPEN-BFR-256 is size 256, channel multiplier 1, narrow 0.5 (the flags of
the official ``run.sh``; 18.9 M parameters). Both are read from the shapes, so any size
and width of the same architecture loads.
"""

from __future__ import annotations

from pathlib import Path

import torch

from f2n.errors import WeightsError
from f2n.nets.gpen import GPEN
from f2n.weights.checkpoint import load_into

# The released GPEN-BFR files' hyperparameters (official run.sh / README flags).
GPEN_BFR: dict[int, dict[str, float]] = {
    512: {"size": 512, "channel_multiplier": 2, "narrow": 1.0},
    256: {"size": 256, "channel_multiplier": 1, "narrow": 0.5},
}

# Keys every GPEN FullGenerator has, whatever its size and width.
SIGNATURE = ("ecd0.0.0.weight", "final_linear.0.weight", "generator.input.input", "generator.to_rgb1.conv.weight")


def is_gpen(state: dict[str, torch.Tensor]) -> bool:
    return all(key in state for key in SIGNATURE)


def gpen_hyperparameters(state: dict[str, torch.Tensor], path: Path) -> dict[str, float]:
    """GPEN's constructor arguments from a state dict's key names and tensor shapes."""
    try:
        num_encoders = 1 + max(int(key.split(".")[0][3:]) for key in state if key.startswith("ecd"))
        style_dim, flat = state["final_linear.0.weight"].shape
        n_mlp = sum(1 for key in state if key.startswith("generator.style.") and key.endswith(".weight"))
        size = 2 ** (num_encoders + 1)
        narrow = flat / 16 / 512  # channels at 4x4 are 512 * narrow
        # channels at full size are (16384 / size) * multiplier * narrow for sizes >= 64
        multiplier = round(state["ecd0.0.0.weight"].shape[0] / (16384 / size * narrow))
    except (KeyError, ValueError, ZeroDivisionError) as error:
        raise WeightsError(f"{path} is not a GPEN checkpoint (cannot read its layout: {error!r})") from None
    return {"size": size, "style_dim": int(style_dim), "n_mlp": n_mlp, "channel_multiplier": multiplier,
            "narrow": narrow}


def load_gpen(state: dict[str, torch.Tensor], path: Path) -> GPEN:
    """A GPEN in eval mode on the CPU, its hyperparameters read from ``state``, loaded strictly."""
    with torch.device("meta"):
        model = GPEN(**gpen_hyperparameters(state, path))  # no random init of 71 M parameters: the file fills it
    load_into(model, state, what=f"GPEN weights {path}")
    return model.eval()
