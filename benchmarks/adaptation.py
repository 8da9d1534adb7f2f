"""The adaptation stage: how long one photo's adaptation takes at the default settings, against
issue 28's target (``TARGET_SECONDS`` on a 2-core CPU).

The photo is scikit-image's astronaut (one face) at ``PHOTO_HW``; the pipeline is the one
f2n-adapt-and-run builds with no options (Real-ESRGAN x4plus, the default pairs per photo, inner
loop, held-out pairs and guard), except that early stopping is off: every step of the budget runs,
so the figure is the worst case of the defaults, not what a lucky photo stops at. The face prior is
an identity ``module:callable`` prior (``numpy:copy``): the prior's own time is the face stage's,
reported apart, and depends on which prior the user has (GPEN's weights are not reachable here).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch

from f2n.benchmarks import stages

TARGET_SECONDS = 30.0
PHOTO_HW = (512, 512)
PRIOR = "numpy:copy"


@dataclass(frozen=True)
class AdaptationTiming:
    """One photo's adaptation: the face stage (detect, align, identity prior, MaskNet) and the
    adaptation proper (inner loop, held-out losses, the guard's figures), in wall seconds."""

    photo_hw: tuple[int, int]
    network: str
    threads: int
    pairs: int
    steps: int
    face_stage_seconds: float
    adapt_seconds: float
    step_seconds: tuple[float, ...]
    load: float  # the 1-minute load average when it ended: above the thread count, other work shared the cores

    @property
    def within_target(self) -> bool:
        return self.adapt_seconds <= TARGET_SECONDS


def measure_adaptation(network: str = "real", photo_hw: tuple[int, int] = PHOTO_HW, threads: int | None = None,
                       requested: Mapping[str, Any] | None = None) -> AdaptationTiming:
    """Build the pipeline for ``network`` (``real``: x4plus; ``tiny``: a 1-block RRDBNet) with the
    settings a user ``requested`` (none: the defaults) and time one adaptation of the astronaut
    photo with every step of the budget taken."""
    build = stages.require_module("f2n.runtime.build")
    threads = threads or stages.threads()
    caller_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:  # the caller's thread count is given back: a test in a pytest session must not leave it at 1
        loaded = stages.sr_loaded() if network == "real" else stages.tiny_loaded()
        pipeline = build.build_pipeline(loaded, engine="torch", device="cpu", precision="fp32", prior=PRIOR,
                                        requested=requested, threads=threads)
        budget = pipeline.config.adapt
        no_early_stop = replace(budget, patience=budget.steps + 1)
        outcome = pipeline.method(pipeline.model, stages.photo_rgb(*photo_hw), adapt=no_early_stop, seed=0)
    finally:
        torch.set_num_threads(caller_threads)
    if outcome.faces is None or outcome.faces.patches is None:
        raise RuntimeError(f"the benchmark photo gave no face pairs: {outcome.reason}")
    face = sum(seconds for step, seconds in outcome.timings.items() if step.startswith("face."))
    steps = tuple(seconds for step, seconds in outcome.timings.items() if step.startswith("adapt.step_"))
    return AdaptationTiming(photo_hw, network, threads, len(outcome.faces.patches), len(steps), face,
                            outcome.timings["adapt"], steps, os.getloadavg()[0])


def markdown(result: AdaptationTiming, machine: str) -> str:
    height, width = result.photo_hw
    per_step = sorted(result.step_seconds)[len(result.step_seconds) // 2] if result.step_seconds else 0.0
    verdict = "met" if result.within_target else "not met"
    return (f"# One photo's adaptation, default settings ({machine}, {result.threads} threads)\n\n"
            f"| photo | network | pairs | steps (budget, no early stop) | face stage s | adaptation s | median step s | load |\n"
            f"| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n"
            f"| {width}x{height}, 1 face | {result.network} | {result.pairs} | {result.steps} "
            f"| {result.face_stage_seconds:.1f} | {result.adapt_seconds:.1f} | {per_step:.2f} | {result.load:.1f} |\n\n"
            f"Target (issue 28): adaptation <= {TARGET_SECONDS:.0f} s per photo on a 2-core CPU: **{verdict}**.\n")
