"""CMDSR's ConditionNet: built for the SR network it modulates, from an f2n checkpoint's
``condition.`` weights and its config metadata (it cannot be recognised from its keys
alone: the modulated convs and so the head's size come from the SR network)."""

from __future__ import annotations

from pathlib import Path

import torch

from f2n.errors import WeightsError
from f2n.nets.condition_net import ConditionNet, ConditionNetConfig, modulated_convs
from f2n.nets.rrdbnet import RRDBNet
from f2n.weights.checkpoint import load_into


def load_condition_net(model: RRDBNet, state: dict[str, torch.Tensor], config: dict[str, object], path: Path) -> ConditionNet:
    """A checkpoint's ConditionNet: its config from the metadata, the modulated convs (and
    so the head's size) from ``model``, strict loading of its weights."""
    try:
        net_config = ConditionNetConfig(num_feat=int(config["num_feat"]), num_layers=int(config["num_layers"]),
                                        modulate=tuple(str(prefix) for prefix in config["modulate"]))
    except (KeyError, TypeError, ValueError) as error:
        raise WeightsError(f"{path}: condition_net config {config!r} is not valid ({error}); "
                           "expected num_feat, num_layers and a list of modulate prefixes") from None
    convs = modulated_convs(model, net_config.modulate)
    if not convs:
        raise WeightsError(f"{path}: no conv of the SR network matches the ConditionNet prefixes {list(net_config.modulate)}")
    condition_net = ConditionNet(convs, net_config)
    load_into(condition_net, state, what=f"ConditionNet weights {path}")
    return condition_net
