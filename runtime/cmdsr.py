"""CMDSR adaptation (Hu et al., 2021): θ′ from the photo's own LR patches, no faces.

support set (textured LR patches) → ConditionNet → γ per output channel → W′ = W·(1 + γ).
One forward pass of a small network instead of gradient steps; the result is an
``AdaptResult`` like the face method's, so θ′ takes the same path to the engine.
"""

from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from torch import nn

from f2n.nets.condition_net import ConditionNet, modulated_weights
from f2n.runtime.adapt import AdaptConfig, AdaptResult
from f2n.runtime.methods import MethodOutcome, StepHook
from f2n.runtime.report import timed
from f2n.runtime.support import SupportConfig, sample_support


class CmdsrAdaptation:
    """``condition_net`` must sit on the SR model's device. The ``adapt`` options of the
    face method's inner loop (steps, lr, optimizer) do not apply."""

    name = "cmdsr"

    def __init__(self, condition_net: ConditionNet, support: SupportConfig = SupportConfig()) -> None:
        self.condition_net = condition_net.eval()
        self.support = support

    def __call__(self, model: nn.Module, rgb: np.ndarray, *, adapt: AdaptConfig, seed: int,
                 on_step: StepHook | None = None) -> MethodOutcome:  # no inner loop: on_step never runs
        timings: dict[str, float] = {}
        with timed(timings, "adapt"):
            with timed(timings, "adapt.support"):
                patches = sample_support(rgb, self.support, seed)
            device = next(model.parameters()).device
            with timed(timings, "adapt.modulate"), torch.no_grad():
                modulated = modulated_weights(model, self.condition_net, patches.to(device))
                # A copy: unmodulated entries are the model's own tensors, and θ′ must outlive them.
                weights = {name: value.float().cpu().clone() for name, value in modulated.items()}
        base = {name: p.detach() for name, p in model.named_parameters()}
        provenance = {"method": self.name, "support_patches": str(len(patches)),
                      "support_patch_size": str(patches.shape[-1]), "seed": str(seed)}
        return MethodOutcome(AdaptResult(weights, (), (), base), "", timings, provenance=provenance)

    def settings(self) -> dict[str, Any]:
        return {"method": self.name, "support": asdict(self.support),
                "condition_net": asdict(self.condition_net.config)}
