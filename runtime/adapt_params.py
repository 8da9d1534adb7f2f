"""Which parameters the inner loop adapts (an ``AdaptConfig.params`` setting, not a fork).

A ``ParamSpace`` holds the tensors the optimiser moves (``trainable``) and ``fold``s them
with the base weights θ into a full, plain weight set θ′ under the canonical RRDBNet names,
so every engine takes the result through the same ``set_weights``:

* ``all``: every parameter (MetaF2N);
* ``tail``: the last ``tail_blocks`` RRDB blocks, ``conv_body`` and the upsampler
  (``conv_up*``, ``conv_hr``, ``conv_last``): the layers nearest the pixels;
* ``bias``: the biases only;
* ``lora``: a low-rank delta B·A on every conv weight, θ′ = θ + B·A reshaped to the kernel.
  B starts at zero, so θ′_0 = θ. Folding is exact: conv(x, W + BA) = conv(x, W) + conv(conv(x, A), B)
  with A as a (rank, in, k, k) conv and B as a 1×1 one (tests/test_adapt_study.py checks it).
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch

ParamSubset = Literal["all", "tail", "bias", "lora"]
PARAM_SUBSETS: tuple[str, ...] = ("all", "tail", "bias", "lora")
Weights = dict[str, torch.Tensor]
_LORA_A, _LORA_B = ".lora_a", ".lora_b"
_TAIL_LAYERS = ("conv_body.", "conv_up", "conv_hr.", "conv_last.")


@dataclass(frozen=True)
class ParamSpace:
    subset: ParamSubset
    trainable: Weights  # what the optimiser moves (fresh tensors, on the adaptation device)

    def fold(self, base: Mapping[str, torch.Tensor]) -> Weights:
        """θ′ at the current trainable tensors."""
        return fold(self.subset, base, self.trainable)


def fold(subset: ParamSubset, base: Mapping[str, torch.Tensor], trainable: Mapping[str, torch.Tensor]) -> Weights:
    """The base weights with ``trainable`` applied; untouched entries are the base tensors themselves."""
    if subset != "lora":
        return {**base, **trainable}
    folded = dict(base)
    for key, factor_a in trainable.items():
        if key.endswith(_LORA_A):
            name = key[: -len(_LORA_A)]
            folded[name] = base[name] + (trainable[name + _LORA_B] @ factor_a).view_as(base[name])
    return folded


def make_param_space(base: Mapping[str, torch.Tensor], subset: ParamSubset, *, lora_rank: int = 4,
                     tail_blocks: int = 2, seed: int = 0) -> ParamSpace:
    """The trainable tensors for ``subset``, initialised so that ``fold`` gives θ back."""
    if subset == "all":
        return ParamSpace(subset, {k: v.detach().clone() for k, v in base.items()})
    if subset == "bias":
        return ParamSpace(subset, {k: v.detach().clone() for k, v in base.items() if k.endswith(".bias")})
    if subset == "tail":
        blocks = sorted({int(m.group(1)) for k in base if (m := re.match(r"body\.(\d+)\.", k))})
        kept = tuple(f"body.{i}." for i in blocks[len(blocks) - tail_blocks:]) + _TAIL_LAYERS
        return ParamSpace(subset, {k: v.detach().clone() for k, v in base.items() if k.startswith(kept)})
    generator = torch.Generator().manual_seed(seed)
    trainable: Weights = {}
    for name, weight in base.items():
        if weight.ndim != 4:
            continue
        fan_in = weight[0].numel()
        rank = min(lora_rank, weight.shape[0], fan_in)
        # A ~ N(0, 1/fan_in) as in LoRA; B = 0 so that θ′_0 = θ.
        factor_a = torch.randn(rank, fan_in, generator=generator) / fan_in ** 0.5
        trainable[name + _LORA_A] = factor_a.to(weight.device, weight.dtype)
        trainable[name + _LORA_B] = torch.zeros(weight.shape[0], rank, device=weight.device, dtype=weight.dtype)
    return ParamSpace("lora", trainable)
