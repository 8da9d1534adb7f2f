"""ReDegNet's networks (DegNet, SynNet encoder, SynNet generator, and the training code's
conditional discriminator): recognise each
state dict by its keys, read the hyperparameters (size, channels per resolution, style
width, mapping depth) from its tensor shapes, load strictly.

The released files (``net_deg_init.pth``, ``net_synE_init.pth``, ``net_synG_init.pth``)
are BasicSR dicts with ``params``, unwrapped by :func:`f2n.weights.load_state_dict_file`;
they are size 256, style_dim 512, n_mlp 8, StyleGAN2's channel table with multiplier 1.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from f2n.errors import WeightsError
from f2n.nets.redegnet_degnet import DegNet
from f2n.nets.redegnet_discriminator import ReDegDiscriminator
from f2n.nets.redegnet_syn_encoder import SynNetEncoder
from f2n.nets.redegnet_syn_generator import SynNetGenerator
from f2n.weights.checkpoint import load_into

StateDict = dict[str, torch.Tensor]

DEGNET_SIGNATURE = ("deg_ecd0.0.weight_orig", "final_linear.0.weight", "final_linear.2.weight")
ENCODER_SIGNATURE = ("ecd0.0.weight_orig", "ecdf.0.weight_orig", "ecdf.2.skip.weight_orig")
GENERATOR_SIGNATURE = ("style.1.weight", "inputself.conv.0.weight_orig", "conv1.conv2.0.weight_orig",
                       "to_rgb1.conv.weight")
DISCRIMINATOR_SIGNATURE = ("netD.models.0.conv1.weight_orig", "netD.fc.weight_orig", "netD.fc2.weight_orig")
DISC_BLOCK = re.compile(r"^netD\.models\.(\d+)\.conv1\.weight_orig$")
STYLE_LINEAR = re.compile(r"^style\.(\d+)\.weight$")
UP_CONV = re.compile(r"^convs\.(\d+)\.conv\.weight$")


def is_degnet(state: StateDict) -> bool:
    return all(key in state for key in DEGNET_SIGNATURE)


def is_syn_encoder(state: StateDict) -> bool:
    return all(key in state for key in ENCODER_SIGNATURE)


def is_syn_generator(state: StateDict) -> bool:
    return all(key in state for key in GENERATOR_SIGNATURE)


def _trunk_channels(state: StateDict, prefix: str, path: Path | str) -> tuple[int, dict[int, int]]:
    """(size, channels per resolution) of an encoder trunk ``<prefix>0..<prefix>K``."""
    pattern = re.compile(rf"^{prefix}(\d+)\.0\.weight_orig$")
    indices = sorted(int(match[1]) for key in state if (match := pattern.match(key)))
    if not indices or indices != list(range(len(indices))):
        raise WeightsError(f"{path}: the {prefix}N convs are missing or not numbered 0..N")
    size = 2 ** (len(indices) + 1)
    return size, {size >> index: state[f"{prefix}{index}.0.weight_orig"].shape[0] for index in indices}


def degnet_hyperparameters(state: StateDict, path: Path | str) -> dict[str, object]:
    size, channels = _trunk_channels(state, "deg_ecd", path)
    return {"size": size, "style_dim": state["final_linear.2.weight"].shape[0], "channels": channels}


def syn_encoder_hyperparameters(state: StateDict, path: Path | str) -> dict[str, object]:
    size, channels = _trunk_channels(state, "ecd", path)
    return {"size": size, "channels": channels}


def syn_generator_hyperparameters(state: StateDict, path: Path | str) -> dict[str, object]:
    up_convs = sorted(int(match[1]) for key in state if (match := UP_CONV.match(key)) and int(match[1]) % 2 == 0)
    if up_convs != list(range(0, 2 * len(up_convs), 2)):
        raise WeightsError(f"{path}: the generator's convs.N are not numbered 0..N")
    channels = {4: state["inputself.conv.0.weight_orig"].shape[0]}
    channels.update({8 << (index // 2): state[f"convs.{index}.conv.weight"].shape[1] for index in up_convs})
    return {"size": 4 << len(up_convs), "style_dim": state["style.1.weight"].shape[0],
            "n_mlp": sum(1 for key in state if STYLE_LINEAR.match(key)), "channels": channels}


def load_degnet(state: StateDict, path: Path | str) -> DegNet:
    """A DegNet in eval mode on the CPU, loaded strictly."""
    model = DegNet(**degnet_hyperparameters(state, path))
    load_into(model, state, what=f"ReDegNet DegNet weights {path}")
    return model.eval()


def load_syn_encoder(state: StateDict, path: Path | str) -> SynNetEncoder:
    """A SynNet encoder in eval mode on the CPU, loaded strictly."""
    model = SynNetEncoder(**syn_encoder_hyperparameters(state, path))
    load_into(model, state, what=f"ReDegNet SynNet encoder weights {path}")
    return model.eval()


def load_syn_generator(state: StateDict, path: Path | str) -> SynNetGenerator:
    """A SynNet generator in eval mode on the CPU, loaded strictly."""
    model = SynNetGenerator(**syn_generator_hyperparameters(state, path))
    load_into(model, state, what=f"ReDegNet SynNet generator weights {path}")
    return model.eval()


def is_redegnet_discriminator(state: StateDict) -> bool:
    return all(key in state for key in DISCRIMINATOR_SIGNATURE)


def discriminator_hyperparameters(state: StateDict, path: Path | str) -> dict[str, int]:
    blocks = sorted(int(match[1]) for key in state if (match := DISC_BLOCK.match(key)))
    if blocks != list(range(len(blocks))):
        raise WeightsError(f"{path}: the discriminator's netD.models.N blocks are not numbered 0..N")
    return {"size": 2 ** (len(blocks) + 3), "dim": state["netD.models.0.conv1.weight_orig"].shape[0]}


def load_redegnet_discriminator(state: StateDict, path: Path | str) -> ReDegDiscriminator:
    """ReDegNet's conditional discriminator in eval mode on the CPU, loaded strictly."""
    model = ReDegDiscriminator(**discriminator_hyperparameters(state, path))
    load_into(model, state, what=f"ReDegNet discriminator weights {path}")
    return model.eval()
