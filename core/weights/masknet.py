"""MaskNet (MetaF2N's f_m): recognise a state dict, read its width and depth from it, load it."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from f2n.errors import WeightsError
from f2n.nets.masknet import MaskNet
from f2n.weights.checkpoint import load_into

CONV_WEIGHT = re.compile(r"^body\.(\d+)\.weight$")


def is_masknet(state: dict[str, torch.Tensor]) -> bool:
    """Only ``body.<even>.weight/bias`` convs, the last with one output channel."""
    convs = [key for key in state if CONV_WEIGHT.match(key)]
    return bool(convs) and len(state) == 2 * len(convs) and state[max(convs, key=_index)].shape[0] == 1


def masknet_hyperparameters(state: dict[str, torch.Tensor], path: Path | str) -> dict[str, int]:
    convs = sorted((key for key in state if CONV_WEIGHT.match(key)), key=_index)
    if not convs:
        raise WeightsError(f"{path} has no body.N.weight convs, expected a MaskNet")
    first = state[convs[0]]
    return {"in_channels": first.shape[1], "num_feat": first.shape[0], "num_layers": len(convs)}


def load_masknet(state: dict[str, torch.Tensor], path: Path | str, lq_resize: str = "bicubic") -> MaskNet:
    """A MaskNet in eval mode on the CPU, loaded strictly; ``lq_resize``: the bicubic its
    LQ input is made with (a checkpoint's ``masknet_lq_resize``)."""
    masknet = MaskNet(**masknet_hyperparameters(state, path), lq_resize=lq_resize)
    load_into(masknet, state, what=f"MaskNet weights {path}")
    return masknet.eval()


def _index(key: str) -> int:
    return int(CONV_WEIGHT.match(key)[1])
