"""The adaptation study's own inner-loop variants (issue 16, docs/adaptation.md): what it tried
beyond the runtime's settings, handed to :func:`f2n.runtime.adapt.adapt` as an
:class:`~f2n.runtime.adapt_params.InnerLoopVariant`.

* ``tail``: the last ``tail_blocks`` RRDB blocks, ``conv_body`` and the upsampler
  (``conv_up*``, ``conv_hr``, ``conv_last``): the layers nearest the pixels;
* ``lora``: a low-rank delta B·A on every conv weight, θ′ = θ + B·A reshaped to the kernel.
  B starts at zero, so θ′_0 = θ. Folding is exact: conv(x, W + BA) = conv(x, W) + conv(conv(x, A), B)
  with A as a (rank, in, k, k) conv and B as a 1×1 one (tests/test_adapt_study.py checks it);
* ``l2_pull``: λ·‖θ′ − θ‖² / ‖θ‖² over the moved tensors added to the loss (a pull toward θ);
* ``augment``: every pair flipped and rotated by a random multiple of 90° at every step.
"""

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Literal

import torch

from f2n.errors import ConfigError
from f2n.runtime.adapt_params import InnerLoopVariant, ParamSpace, Weights
from f2n.runtime.types import PatchBatch

_LORA_A, _LORA_B = ".lora_a", ".lora_b"
_TAIL_LAYERS = ("conv_body.", "conv_up", "conv_hr.", "conv_last.")


@dataclass(frozen=True)
class StudyKnobs:
    """The study's settings beyond AdaptConfig; the defaults change nothing."""

    params: Literal["tail", "lora"] | None = None  # None: AdaptConfig.params
    lora_rank: int = 4  # params="lora" only
    tail_blocks: int = 2  # params="tail" only: how many of the last RRDB blocks adapt
    l2_pull: float = 0.0
    augment: bool = False

    def __post_init__(self) -> None:
        if self.params not in (None, "tail", "lora"):
            raise ConfigError(f"study parameters must be tail or lora, got {self.params!r}")
        if self.lora_rank < 1 or self.tail_blocks < 1 or not 0 <= self.l2_pull < math.inf:
            raise ConfigError(f"lora_rank and tail_blocks must be >= 1 and l2_pull finite >= 0, got "
                              f"{self.lora_rank}, {self.tail_blocks}, {self.l2_pull}")

    def variant(self) -> InnerLoopVariant:
        space = {None: None, "tail": partial(tail_space, blocks=self.tail_blocks),
                 "lora": partial(lora_space, rank=self.lora_rank)}[self.params]
        return InnerLoopVariant(space=space, penalty=L2Pull(self.l2_pull) if self.l2_pull else None,
                                transform=random_dihedral if self.augment else None)


def tail_space(base: Mapping[str, torch.Tensor], seed: int = 0, *, blocks: int = 2) -> ParamSpace:
    """The last ``blocks`` RRDB blocks and the layers after the trunk (``seed``: unused, nothing is random)."""
    found = sorted({int(m.group(1)) for k in base if (m := re.match(r"body\.(\d+)\.", k))})
    kept = tuple(f"body.{i}." for i in found[len(found) - blocks:]) + _TAIL_LAYERS
    return ParamSpace({k: v.detach().clone() for k, v in base.items() if k.startswith(kept)})


def lora_space(base: Mapping[str, torch.Tensor], seed: int = 0, *, rank: int = 4) -> ParamSpace:
    """Factors A (seeded) and B (zero) of a rank-``rank`` delta per conv weight."""
    generator = torch.Generator().manual_seed(seed)
    trainable: Weights = {}
    for name, weight in base.items():
        if weight.ndim != 4:
            continue
        fan_in = weight[0].numel()
        kept_rank = min(rank, weight.shape[0], fan_in)
        # A ~ N(0, 1/fan_in) as in LoRA; B = 0 so that θ′_0 = θ.
        factor_a = torch.randn(kept_rank, fan_in, generator=generator) / fan_in ** 0.5
        trainable[name + _LORA_A] = factor_a.to(weight.device, weight.dtype)
        trainable[name + _LORA_B] = torch.zeros(weight.shape[0], kept_rank, device=weight.device, dtype=weight.dtype)
    return ParamSpace(trainable, fold_lora)


def fold_lora(base: Mapping[str, torch.Tensor], trainable: Mapping[str, torch.Tensor]) -> Weights:
    """θ + B·A per conv weight; the other entries are θ's tensors themselves."""
    folded = dict(base)
    for key, factor_a in trainable.items():
        if key.endswith(_LORA_A):
            name = key[: -len(_LORA_A)]
            folded[name] = base[name] + (trainable[name + _LORA_B] @ factor_a).view_as(base[name])
    return folded


@dataclass(frozen=True)
class L2Pull:
    """λ·‖θ′ − θ‖² / ‖θ‖² over the tensors the step moved (a frozen dataclass: the compiled step is cached by it)."""

    weight: float

    def __call__(self, weights: Weights, base: Weights) -> torch.Tensor:
        moved = [name for name in weights if weights[name] is not base[name]]
        drift = sum(((weights[n] - base[n]) ** 2).sum() for n in moved)
        return self.weight * drift / sum((base[n] ** 2).sum() for n in moved)


def random_dihedral(batch: PatchBatch, generator: torch.Generator) -> PatchBatch:
    """Every pair flipped and rotated by a random multiple of 90°, LQ, target and weight alike."""
    turns = torch.randint(0, 4, (len(batch),), generator=generator).tolist()
    flips = torch.randint(0, 2, (len(batch),), generator=generator).tolist()

    def apply(tensor: torch.Tensor) -> torch.Tensor:
        out = [torch.rot90(t, k, dims=(-2, -1)) for t, k in zip(tensor, turns)]
        return torch.stack([t.flip(-1) if f else t for t, f in zip(out, flips)])

    return PatchBatch(apply(batch.lq), apply(batch.target), apply(batch.weight))
