"""Timing one stage against a fixed reference workload, round by round.

Every round times the reference workload and then the stage, so both see the same
machine load; the regression check compares the ratio of their medians, which moves
far less between runs on a shared or throttled machine than either time alone.
"""

import os
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from f2n.errors import ConfigError

INJECT_DELAY_ENV = "F2N_BENCH_INJECT_DELAY"


@dataclass(frozen=True)
class Timing:
    seconds: float  # median stage time over the rounds
    reference_seconds: float  # median reference time over the same rounds
    rounds: int
    # Median seconds per step where the call returns an object with a ``timings`` mapping
    # (the pipeline's run report): the end-to-end waterfall.
    breakdown: Mapping[str, float] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.seconds / self.reference_seconds


def reference_workload() -> None:
    """A fixed miniature of the work f2n's stages do: a dense block of 3x3 convs with
    concatenations and leaky ReLUs (many short parallel regions, as in RRDBNet, GPEN and
    MaskNet) on torch's threads, and elementwise numpy on one thread. The inputs are not fed back, so values never
    drift into denormals. Never change it without re-recording every baseline."""
    generator = torch.Generator().manual_seed(0)
    features = torch.rand(1, 32, 48, 48, generator=generator)
    kernels = [torch.rand(16, 32 + 16 * index, 3, 3, generator=generator) / 100 for index in range(4)]
    with torch.inference_mode():
        for _ in range(3):
            outputs = [features]
            for kernel in kernels:
                conv = torch.nn.functional.conv2d(torch.cat(outputs, 1), kernel, padding=1)
                outputs.append(torch.nn.functional.leaky_relu(conv, 0.2))
    pixels = np.random.default_rng(0).random((512, 512, 3), dtype=np.float32)
    for _ in range(4):  # the numpy glue around the networks: blending, clipping, scaling
        np.clip(pixels * 1.5 - 0.25, 0.0, 1.0) * pixels


def injected_delays(environ: dict[str, str] | None = None) -> dict[str, float]:
    """Parse ``F2N_BENCH_INJECT_DELAY=stage:fraction[,stage:fraction]`` — a test-only hook
    that makes the named stage that fraction slower (0.5 = 50 % slower)."""
    text = (os.environ if environ is None else environ).get(INJECT_DELAY_ENV, "").strip()
    delays: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        stage, sep, fraction = item.rpartition(":")
        try:
            value = float(fraction)
        except ValueError:
            value = -1.0
        if not sep or not stage or value < 0:
            raise ConfigError(f"{INJECT_DELAY_ENV} item {item!r} is not stage:fraction with fraction >= 0")
        delays[stage] = value
    return delays


def _timed(run: Callable[[], object], delay_fraction: float) -> tuple[float, object]:
    start = time.perf_counter()
    value = run()
    if delay_fraction:
        time.sleep((time.perf_counter() - start) * delay_fraction)
    return time.perf_counter() - start, value


def _median_steps(values: list[object]) -> dict[str, float]:
    steps = [timings for timings in (getattr(value, "timings", None) for value in values)
             if isinstance(timings, Mapping)]
    if not steps:
        return {}
    return {key: statistics.median(float(timings.get(key, 0.0)) for timings in steps) for key in steps[0]}


def measure(run: Callable[[], object], rounds: int, warmup: int = 1, delay_fraction: float = 0.0,
            min_rounds: int = 3, max_seconds: float = 20.0) -> Timing:
    """Median time of ``run`` and of the reference workload over interleaved rounds,
    after ``warmup`` untimed calls of each. Rounds stop early, after ``min_rounds``,
    once the stage has used ``max_seconds``, so a slow stage cannot blow the check's
    time budget. ``run`` must finish its own work (a GPU stage synchronises)."""
    if rounds < 1:
        raise ConfigError(f"rounds must be >= 1, got {rounds}")
    for _ in range(warmup):
        reference_workload()
        run()
    stage_times, reference_times, values = [], [], []
    while len(stage_times) < rounds:
        reference_times.append(_timed(reference_workload, 0.0)[0])
        seconds, value = _timed(run, delay_fraction)
        stage_times.append(seconds)
        values.append(value)
        if len(stage_times) >= min_rounds and sum(stage_times) > max_seconds:
            break
    return Timing(statistics.median(stage_times), statistics.median(reference_times), len(stage_times),
                  _median_steps(values))
