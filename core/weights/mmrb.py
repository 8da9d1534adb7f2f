"""The MMRB face restorer (:mod:`f2n.nets.mmrb`): recognise a state dict, read its
hyperparameters from key names and tensor shapes, load it; save a trained one;
initialise one from GPEN weights.

A restorer file is a plain ``.safetensors`` of the restorer's state dict (what
``f2n-train --method mmrb`` writes at each checkpoint); ``--prior FILE`` recognises it by
its keys, like every other face prior.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from f2n.errors import WeightsError
from f2n.nets.mmrb import MMRBRestorer
from f2n.weights.checkpoint import load_into, save_safetensors_atomic
from f2n.weights.gpen import gpen_hyperparameters, is_gpen

MMRB_FORMAT = "f2n-mmrb-restorer/1"  # in the file's metadata, for people reading it
DECODER_BLOCK = re.compile(r"^decoder\.0\.(\d+)\.fuse\.0\.weight$")


def is_mmrb_restorer(state: Mapping[str, torch.Tensor]) -> bool:
    """GPEN's keys plus the codec's own (an MMRB after the first encoder conv, the decoder's to_rgb)."""
    return is_gpen(state) and "ecd0.1.path3.0.weight" in state and "to_rgb.0.weight" in state


def mmrb_hyperparameters(state: Mapping[str, torch.Tensor], path: Path) -> dict[str, float]:
    """The GPEN part's hyperparameters from GPEN's rules; the decoder's MMRB count from its keys."""
    hyper = gpen_hyperparameters(dict(state), path)
    hyper["decoder_blocks"] = sum(1 for key in state if DECODER_BLOCK.match(key))
    return hyper


def load_mmrb_restorer(state: dict[str, torch.Tensor], path: Path) -> MMRBRestorer:
    """A restorer in eval mode on the CPU, loaded strictly."""
    with torch.device("meta"):
        model = MMRBRestorer(**mmrb_hyperparameters(state, path))
    load_into(model, state, what=f"MMRB restorer {path}")
    return model.eval()


def save_mmrb_restorer(path: str | Path, model: MMRBRestorer) -> Path:
    return save_safetensors_atomic(path, model.state_dict(), {"f2n_format": MMRB_FORMAT})


@dataclass(frozen=True)
class GpenInit:
    """What ``init_from_gpen`` took from the GPEN file and what it left at its own init."""

    loaded: tuple[str, ...]  # restorer tensors now equal to the GPEN tensor of the same name
    shape_mismatch: tuple[str, ...]  # same name in both, different shape: left as they were
    not_in_gpen: tuple[str, ...]  # the codec's own tensors (MMRBs, decoder, to_rgb): left as they were

    def summary(self) -> str:
        return (f"{len(self.loaded)} tensors from GPEN, {len(self.shape_mismatch)} of other shapes kept, "
                f"{len(self.not_in_gpen)} codec tensors at their initialisation")


def init_from_gpen(model: MMRBRestorer, gpen_state: Mapping[str, torch.Tensor]) -> GpenInit:
    """Copy every GPEN tensor whose name and shape the restorer shares: the StyleGAN2
    generator, GPEN's encoder convs (``ecd{i}.0``) and ``final_linear``."""
    own = model.state_dict()
    loaded = {name: tensor for name, tensor in gpen_state.items() if name in own and own[name].shape == tensor.shape}
    mismatch = sorted(name for name in gpen_state if name in own and name not in loaded)
    if not loaded:
        raise WeightsError("the GPEN weights share no tensor of the same name and shape with the MMRB restorer: "
                           "is it a GPEN file (FullGenerator keys such as generator.style.1.weight)?")
    with torch.no_grad():
        for name, tensor in loaded.items():
            own[name].copy_(tensor)
    return GpenInit(tuple(sorted(loaded)), tuple(mismatch), tuple(sorted(name for name in own if name not in gpen_state)))
