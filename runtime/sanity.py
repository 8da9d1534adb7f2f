"""Checks on numbers before a photo counts as adapted, for every prior and every method.

A prior that returns NaN, or values in 0-255 instead of [0, 1], and an inner loop that
diverges (a NaN/Inf loss or θ′, or a loss that explodes) must not produce "adapted: true": the photo then runs
with the base weights and the report says why, as for a missing prior.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from f2n.runtime.adapt import AdaptResult

# An inner-loop loss this many times its first value means the steps are running away even
# while the numbers stay finite (bias-only SGD at α = 1e30 reaches 1e29, not Inf).
DIVERGENCE_GROWTH = 1e3

# How far outside [0, 1] a prior's output may stray: cubic resampling of an image in [0, 1]
# (the oracle's warp) overshoots by a few per cent; a 0-255 or [-1, 1] output is far beyond.
PRIOR_RANGE_TOLERANCE = 0.25


def prior_output_problem(restored: np.ndarray, expected_shape: tuple[int, ...]) -> str:
    """Why a prior's output cannot be a training target ('' when it can)."""
    if tuple(restored.shape) != tuple(expected_shape):
        return f"returned shape {tuple(restored.shape)}, expected {tuple(expected_shape)}"
    finite = np.isfinite(restored)
    if not finite.all():
        return f"returned {int((~finite).sum())} NaN/Inf value(s) of {restored.size}"
    low, high = float(restored.min()), float(restored.max())
    if low < -PRIOR_RANGE_TOLERANCE or high > 1 + PRIOR_RANGE_TOLERANCE:
        return f"returned values in [{low:.4g}, {high:.4g}], expected [0, 1] (a 0-255 or [-1, 1] output?)"
    return ""


def adaptation_problem(result: AdaptResult) -> str:
    """Why θ′ must not replace the base weights ('' when it may): a NaN/Inf inner-loop loss, a
    loss over ``DIVERGENCE_GROWTH`` times the first, or a NaN/Inf weight after the last step
    (the loss list cannot show the last update)."""
    for step, loss in enumerate(result.losses, start=1):
        if not math.isfinite(loss):
            return f"the adaptation diverged: inner-loop loss {loss} at step {step} (lower the learning rate)"
        if loss > DIVERGENCE_GROWTH * result.losses[0] > 0:
            return (f"the adaptation diverged: inner-loop loss grew from {result.losses[0]:.4g} to {loss:.4g} "
                    f"at step {step} (lower the learning rate)")
    for name, value in result.weights.items():
        if not bool(torch.isfinite(value).all()):
            return (f"the adaptation diverged: θ′ has NaN/Inf in {name} after {len(result.losses)} step(s) "
                    "(lower the learning rate)")
    return ""
