"""A Meta-SGD checkpoint (issue 28, third round): per-element inner-loop step sizes α over the
adapted subset of a frozen SR network, and the MaskNet that weighs the face pairs.

One safetensors file: ``step_size.<canonical RRDBNet name>`` (α itself, > 0, the shape of the
parameter it scales) and ``masknet.<MaskNet key>``; the metadata's ``f2n_format`` is
``metasgd-1`` and ``record`` a JSON string saying how it was trained (data, steps, losses, time).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from f2n.errors import WeightsError
from f2n.nets.masknet import MaskNet
from f2n.weights.checkpoint import read_weight_file, save_safetensors_atomic
from f2n.weights.masknet import load_masknet

METASGD_FORMAT = "metasgd-1"
STEP_PREFIX = "step_size."
MASK_PREFIX = "masknet."


@dataclass(frozen=True)
class MetaSgdCheckpoint:
    step_sizes: dict[str, torch.Tensor]  # canonical parameter name -> α (same shape), all > 0
    masknet: MaskNet
    record: dict[str, object] = field(default_factory=dict)


def save_metasgd(path: str | Path, step_sizes: Mapping[str, torch.Tensor], masknet: Mapping[str, torch.Tensor],
                 record: Mapping[str, object]) -> Path:
    """Write α (not log α: the file says what the runtime multiplies by) and the MaskNet state."""
    tensors = {**{STEP_PREFIX + k: v.detach().float() for k, v in step_sizes.items()},
               **{MASK_PREFIX + k: v.detach().float() for k, v in masknet.items()}}
    return save_safetensors_atomic(path, tensors, {"f2n_format": METASGD_FORMAT, "record": json.dumps(dict(record))})


def load_metasgd(path: str | Path) -> MetaSgdCheckpoint:
    """The step sizes and the MaskNet (eval mode, CPU) of a Meta-SGD checkpoint; a WeightsError
    naming what is wrong otherwise."""
    weights = read_weight_file(path)
    if weights.metadata.get("f2n_format") != METASGD_FORMAT:
        raise WeightsError(f"{path} has f2n_format {weights.metadata.get('f2n_format')!r}, expected {METASGD_FORMAT!r}")
    steps = {k[len(STEP_PREFIX):]: v for k, v in weights.tensors.items() if k.startswith(STEP_PREFIX)}
    mask = {k[len(MASK_PREFIX):]: v for k, v in weights.tensors.items() if k.startswith(MASK_PREFIX)}
    if not steps or len(steps) + len(mask) != len(weights.tensors):
        raise WeightsError(f"{path}: expected step_size.* and masknet.* tensors only, at least one step size")
    bad = [k for k, v in steps.items() if not bool((v > 0).all())]
    if bad:
        raise WeightsError(f"{path}: step sizes of {', '.join(bad[:3])} are not all > 0")
    try:
        record = json.loads(weights.metadata.get("record", "{}"))
    except json.JSONDecodeError as error:
        raise WeightsError(f"{path}: its record is not JSON ({error.msg})") from None
    return MetaSgdCheckpoint(steps, load_masknet(mask, path), record)
