"""Which parameters the inner loop adapts (an ``AdaptConfig.params`` setting, not a fork), and
what a study may vary in the inner loop besides (:class:`InnerLoopVariant`).

A ``ParamSpace`` holds the tensors the optimiser moves (``trainable``) and how they fold with
the base weights θ into a full, plain weight set θ′ under the canonical RRDBNet names, so every
engine takes the result through the same ``set_weights``:

* ``all``: every parameter (MetaF2N; a meta-trained checkpoint adapts so);
* ``bias``: the biases only (the default for the stock network, docs/adaptation.md).

The adaptation study's other subsets (the last RRDB blocks, low-rank deltas), its pull toward θ
and its flipped pairs are its own (:mod:`f2n.eval.study_variants`), handed in as a variant.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import torch

from f2n.runtime.types import PatchBatch

ParamSubset = Literal["all", "bias"]
PARAM_SUBSETS: tuple[str, ...] = ("all", "bias")
Weights = dict[str, torch.Tensor]
Fold = Callable[[Mapping[str, torch.Tensor], Mapping[str, torch.Tensor]], Weights]  # (θ, trainable) -> θ′
Penalty = Callable[[Weights, Weights], torch.Tensor]  # (θ′, θ) -> a term added to the loss


def overlay(base: Mapping[str, torch.Tensor], trainable: Mapping[str, torch.Tensor]) -> Weights:
    """θ with the trainable tensors in place of their namesakes; the rest are θ's tensors themselves."""
    return {**base, **trainable}


@dataclass(frozen=True)
class ParamSpace:
    trainable: Weights  # what the optimiser moves (fresh tensors, on the adaptation device)
    fold_with: Fold = overlay  # a module-level function: the compiled step is cached by it

    def fold(self, base: Mapping[str, torch.Tensor]) -> Weights:
        """θ′ at the current trainable tensors."""
        return self.fold_with(base, self.trainable)


def make_param_space(base: Mapping[str, torch.Tensor], subset: ParamSubset) -> ParamSpace:
    """The trainable tensors for ``subset``, copies of θ's, so that folding them gives θ back."""
    keep = (lambda name: True) if subset == "all" else (lambda name: name.endswith(".bias"))
    return ParamSpace({k: v.detach().clone() for k, v in base.items() if keep(k)})


@dataclass(frozen=True)
class InnerLoopVariant:
    """What a study changes in the inner loop beyond :class:`~f2n.runtime.adapt.AdaptConfig`; the
    runtime passes none. ``penalty`` must compare by value (a frozen dataclass): the compiled step
    is cached by it."""

    space: Callable[[Mapping[str, torch.Tensor], int], ParamSpace] | None = None  # (θ, seed), instead of params
    penalty: Penalty | None = None
    transform: Callable[[PatchBatch, torch.Generator], PatchBatch] | None = None  # each step's pairs
    # Meta-SGD (f2n.weights.metasgd): plain SGD with these per-element step sizes, by trainable name,
    # instead of AdaptConfig's optimizer and lr
    step_sizes: Mapping[str, torch.Tensor] | None = None
