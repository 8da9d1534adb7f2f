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
    """A fixed mix of the work f2n's stages do: 3x3 convs in torch and a float matmul
    in numpy (~50 ms on an idle 2-core EPYC). The inputs are not fed back, so the values
    never drift into denormals. Never change it without re-recording every baseline."""
    generator = torch.Generator().manual_seed(0)
    features = torch.rand(1, 32, 64, 64, generator=generator)
    kernel = torch.rand(32, 32, 3, 3, generator=generator)
    with torch.inference_mode():
        for _ in range(4):
            torch.nn.functional.conv2d(features, kernel, padding=1)
    rng = np.random.default_rng(0)
    left, right = rng.random((256, 256), dtype=np.float32), rng.random((256, 256), dtype=np.float32)
    for _ in range(8):
        left @ right


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


def measure(run: Callable[[], object], rounds: int, warmup: int = 1, delay_fraction: float = 0.0) -> Timing:
    """Median time of ``run`` and of the reference workload over interleaved rounds,
    after ``warmup`` untimed calls of each. ``run`` must finish its own work (a GPU
    stage synchronises before it returns)."""
    if rounds < 1:
        raise ConfigError(f"rounds must be >= 1, got {rounds}")
    for _ in range(warmup):
        reference_workload()
        run()
    stage_times, reference_times, values = [], [], []
    for _ in range(rounds):
        reference_times.append(_timed(reference_workload, 0.0)[0])
        seconds, value = _timed(run, delay_fraction)
        stage_times.append(seconds)
        values.append(value)
    return Timing(statistics.median(stage_times), statistics.median(reference_times), rounds, _median_steps(values))
