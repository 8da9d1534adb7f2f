"""The one dispatcher from a state dict to a network: which network it is (by its keys)
and the loaded module (hyperparameters from its shapes). The CLI, the registry's check
of unpinned files and the face priors all ask here; each network's own rules live in
its module (:mod:`f2n.weights.sr` for RRDBNet, :mod:`f2n.weights.gpen`, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import nn

from f2n.errors import WeightsError
from f2n.weights.checkpoint import load_state_dict_file
from f2n.weights.discriminator import is_unet_discriminator, load_discriminator
from f2n.weights.face_restorers import SPANDREL_ARCHITECTURES, is_face_restorer, load_face_restorer
from f2n.weights.gpen import is_gpen, load_gpen
from f2n.weights.gpen_discriminator import is_gpen_discriminator, load_gpen_discriminator
from f2n.weights.loss_networks import is_arcface_ir_se50, is_vgg19, load_arcface_ir_se50, load_vgg19
from f2n.weights.masknet import is_masknet, load_masknet
from f2n.weights.metaf2n_import import is_imported_metaf2n, load_imported_metaf2n
from f2n.weights.mmrb import is_mmrb_restorer, load_mmrb_restorer
from f2n.weights.redegnet import (
    is_degnet,
    is_redegnet_discriminator,
    is_syn_encoder,
    is_syn_generator,
    load_degnet,
    load_redegnet_discriminator,
    load_syn_encoder,
    load_syn_generator,
)
from f2n.weights.registry import WeightSpec
from f2n.weights.sr import is_rrdbnet, load_rrdbnet

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Network:
    name: str
    detect: Callable[[StateDict], bool]
    load: Callable[[StateDict, Path], nn.Module]
    face_restorer: bool = False


# Read top to bottom; the first whose keys match wins (an MMRB restorer has GPEN's keys too).
NETWORKS: tuple[Network, ...] = (
    Network("rrdbnet", is_rrdbnet, load_rrdbnet),
    Network("mmrb", is_mmrb_restorer, load_mmrb_restorer, face_restorer=True),
    Network("gpen", is_gpen, load_gpen, face_restorer=True),
    *(Network(name, partial(is_face_restorer, name), partial(load_face_restorer, name), face_restorer=True)
      for name in SPANDREL_ARCHITECTURES),
    Network("masknet", is_masknet, load_masknet),
    Network("unet-discriminator", is_unet_discriminator, load_discriminator),
    Network("gpen-discriminator", is_gpen_discriminator, load_gpen_discriminator),
    Network("vgg19", is_vgg19, load_vgg19),
    Network("arcface-ir-se50", is_arcface_ir_se50, load_arcface_ir_se50),
    Network("metaf2n", is_imported_metaf2n, load_imported_metaf2n),  # f2n-models import metaf2n's output
    Network("redegnet-degnet", is_degnet, load_degnet),
    Network("redegnet-syn-encoder", is_syn_encoder, load_syn_encoder),
    Network("redegnet-syn-generator", is_syn_generator, load_syn_generator),
    Network("redegnet-discriminator", is_redegnet_discriminator, load_redegnet_discriminator),
)


def identify(state: StateDict) -> str | None:
    """The name of the network whose keys ``state`` has, or None."""
    return next((network.name for network in NETWORKS if network.detect(state)), None)


def load_network(state: StateDict, path: Path, *, expected: str | tuple[str, ...] | None = None) -> tuple[str, nn.Module]:
    """(name, module in eval mode on the CPU) for ``state``; ``expected`` (a name or names)
    turns any other network into a WeightsError."""
    name = identify(state)
    allowed = (expected,) if isinstance(expected, str) else expected
    if name is None or (allowed is not None and name not in allowed):
        wanted = " or ".join(allowed) if allowed is not None else " or ".join(network.name for network in NETWORKS)
        found = f"a {name} network" if name else f"no known network (keys start {', '.join(list(state)[:3])})"
        raise WeightsError(f"{path} holds {found}, expected {wanted}")
    network = next(network for network in NETWORKS if network.name == name)
    return name, network.load(state, path)


def face_restorer_names() -> tuple[str, ...]:
    return tuple(network.name for network in NETWORKS if network.face_restorer)


def check_loads(spec: WeightSpec, path: Path) -> StateDict:
    """An unpinned registry file's check: a code-free state dict that loads strictly as the
    spec's network (when it names one). Returns the state dict."""
    state = load_state_dict_file(path)
    if spec.network is not None:
        load_network(state, path, expected=spec.network)
    return state
