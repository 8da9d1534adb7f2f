"""Adaptation methods: how a photo's θ′ is made. Every method takes the decoded photo
and returns an ``AdaptResult`` (or why it could not adapt); the pipeline hands its
weights to the engine through the one ``set_weights`` call, whatever the method.

* ``FaceAdaptation`` (MetaF2N): faces → restored faces → inner-loop steps on face patches;
* ``CmdsrAdaptation`` (:mod:`f2n.runtime.cmdsr`): a ConditionNet reads LR patches of the
  photo itself and modulates the convs — no faces needed.
"""

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
from torch import nn

from f2n.nets.masknet import MaskNet
from f2n.runtime.adapt import AdaptConfig, AdaptResult, AdaptStep, resolved_precision
from f2n.runtime.adapt import adapt as run_inner_loop
from f2n.runtime.context_patches import nonface_patches, texture_view
from f2n.runtime.face.prior import FacePrior
from f2n.runtime.face.stage import Detector, FaceStageConfig, run_face_stage
from f2n.runtime.loss_networks import LossNetworks
from f2n.runtime.report import timed
from f2n.runtime.types import FaceStageResult

StepHook = Callable[[AdaptStep], None]
# --adapt-method: auto picks cmdsr for a checkpoint with a ConditionNet, else faces (f2n.runtime.build)
METHODS = ("auto", "faces", "cmdsr", "redegnet")


@dataclass(frozen=True)
class MethodOutcome:
    """One photo through one method. ``adaptation`` None: not adapted, ``reason`` says why."""

    adaptation: AdaptResult | None
    reason: str
    timings: Mapping[str, float]
    faces: FaceStageResult | None = None  # the face stage's results (paste, debug images), faces only
    provenance: Mapping[str, str] = field(default_factory=dict)  # how θ′ was made: saved with --save-weights


class AdaptationMethod(Protocol):
    name: str  # "faces" or "cmdsr": in the report and the per-photo line

    def __call__(self, model: nn.Module, rgb: np.ndarray, *, adapt: AdaptConfig, seed: int,
                 on_step: StepHook | None = None) -> MethodOutcome:
        """Adapt ``model``'s weights (never modified) to one (H, W, 3) float32 photo in [0, 1];
        a method with an inner loop shows ``on_step`` each step."""

    def settings(self) -> dict[str, Any]:
        """The method's options, for the JSON report."""


class FaceAdaptation:
    """MetaF2N: ``prior`` None means the prior could not be loaded (or --no-adapt: no
    ``detector`` either); ``prior_problem`` then says why (reported as the reason for not adapting).
    ``loss_networks``: the frozen critic and VGG-19 of an objective with those terms."""

    name = "faces"

    def __init__(self, detector: Detector | None, prior: FacePrior | None, *, masknet: MaskNet | None = None,
                 face: FaceStageConfig = FaceStageConfig(), prior_problem: str = "",
                 loss_networks: LossNetworks | None = None) -> None:
        self.detector = detector
        self.prior = prior
        self.masknet = masknet
        self.face = face
        self.prior_problem = prior_problem or "no face prior"
        self.loss_networks = loss_networks

    def __call__(self, model: nn.Module, rgb: np.ndarray, *, adapt: AdaptConfig, seed: int,
                 on_step: StepHook | None = None) -> MethodOutcome:
        if self.prior is None:
            return MethodOutcome(None, self.prior_problem, {})
        # detect, align, restore, mask: the face stage
        faces = run_face_stage(rgb, detector=self.detector, prior=self.prior, config=self.face,
                               masknet=self.masknet, seed=seed)
        timings = {f"face.{step}": seconds for step, seconds in faces.timings.items()}
        if faces.patches is None:
            return MethodOutcome(None, faces.no_faces_reason, timings, faces)
        # adapt θ to the face pairs
        with timed(timings, "adapt"):
            boxes = [face.box for face in faces.faces]
            context = (nonface_patches(rgb, boxes, count=adapt.context, size=self.face.patches.lq_size, seed=seed)
                       if adapt.wants_context else None)
            view = texture_view(rgb, boxes, seed=seed) if adapt.texture_guarded else None
            result = run_inner_loop(model, faces.patches, adapt, on_step, seed=seed, context=context, guard_view=view,
                                    loss_networks=self.loss_networks)
        timings.update({f"adapt.step_{i}": t for i, t in enumerate(result.step_seconds, start=1)})
        provenance = {
            "method": self.name, "steps": str(result.best_step), "steps_taken": str(len(result.losses)),
            "step_budget": str(adapt.steps), "lr": repr(adapt.lr), "optimizer": adapt.optimizer,
            "params": adapt.params, "precision": resolved_precision(adapt),
            "final_loss": repr(result.losses[-1]) if result.losses else "",
            "holdout_loss_base": repr(result.holdout_losses[0]) if result.holdout_losses else "",
            "holdout_loss_kept": repr(result.holdout_losses[result.best_step]) if result.holdout_losses else "",
            "objective": adapt.objective, "strength": repr(adapt.strength),
            "texture_ratio": repr(result.texture_ratio) if result.texture_ratio is not None else "",
            "texture_floor": repr(adapt.texture_floor), "texture_ceiling": repr(adapt.texture_ceiling),
            "nonface_patches": str(len(context) if context is not None else 0),
            "guard_pixels": str(view.pixels if view is not None else 0),
        }
        if not result.adapted:  # the guard kept θ: the engine gets the base weights
            return MethodOutcome(None, result.reason, timings, faces, provenance)
        return MethodOutcome(result, "", timings, faces, provenance)

    def settings(self) -> dict[str, Any]:
        return {"method": self.name, "prior": self.prior.name if self.prior is not None else None,
                "prior_provenance": dict(self.prior.provenance) if self.prior is not None else None,
                "patches": asdict(self.face.patches),
                "masknet_lq_resize": self.masknet.lq_resize if self.masknet is not None else None}

