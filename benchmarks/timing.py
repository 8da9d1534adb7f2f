"""Timing one stage against a fixed reference workload, round by round.

Every round times the reference workload and then the stage, so both see the same
machine load; the regression check divides the stage's median by the median reference
time of the whole run (:func:`f2n.benchmarks.regression.with_run_reference`), a ratio
that moves far less between runs on a shared or throttled machine than either time alone.

CPU stages are timed in process CPU time (``time.process_time``): on a shared runner the
time a stage spends descheduled while other jobs run is not its own cost, and with one
thread its CPU time is what its wall time would be on an idle core. GPU stages are timed
in wall time (the CPU mostly waits for the device).
"""

import functools
import os
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from f2n.errors import ConfigError

INJECT_DELAY_ENV = "F2N_BENCH_INJECT_DELAY"
CLOCKS: Mapping[str, Callable[[], float]] = {"cpu": time.process_time, "wall": time.perf_counter}


@dataclass(frozen=True)
class Timing:
    seconds: float  # median stage time over the rounds, on ``clock``
    reference_seconds: float  # median reference time over the same rounds, on ``clock``
    rounds: int
    clock: str  # "cpu" (process CPU time) or "wall"
    # Median seconds per step where the call returns an object with a ``timings`` mapping
    # (the pipeline's run report): the end-to-end waterfall.
    breakdown: Mapping[str, float] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.seconds / self.reference_seconds


@functools.lru_cache(maxsize=1)
def _reference_inputs() -> tuple[torch.Tensor, list[torch.Tensor], np.ndarray, np.ndarray]:
    """Made once: allocating and page-faulting fresh inputs in every call made the
    reference's CPU time swing with the memory the previous stage left behind."""
    generator = torch.Generator().manual_seed(0)
    features = torch.rand(1, 32, 96, 96, generator=generator)
    kernels = [(torch.rand(16, 32 + 16 * index, 3, 3, generator=generator) / 100).requires_grad_()
               for index in range(4)]
    pixels = np.random.default_rng(0).random((1024, 1024, 3), dtype=np.float32)
    return features, kernels, pixels, np.empty_like(pixels)


def reference_workload() -> None:
    """A fixed miniature of the work f2n's stages do, with a working set of several MB like
    theirs (a cache-resident toy would react differently to other jobs' cache pressure):
    a dense block of 3x3 convs with concatenations and leaky ReLUs, as in RRDBNet, run
    forward and backward (the adaptation step) and forward only (inference), then
    elementwise numpy on a photo-sized array (the glue around the networks), in place.
    Never change it without re-recording every baseline."""
    features, kernels, pixels, scratch = _reference_inputs()

    def dense_block() -> torch.Tensor:
        outputs = [features]
        for kernel in kernels:
            conv = torch.nn.functional.conv2d(torch.cat(outputs, 1), kernel, padding=1)
            outputs.append(torch.nn.functional.leaky_relu(conv, 0.2))
        return outputs[-1]

    for kernel in kernels:
        kernel.grad = None
    dense_block().sum().backward()
    with torch.inference_mode():
        dense_block()
    np.multiply(pixels, 1.5, out=scratch)
    np.subtract(scratch, 0.25, out=scratch)
    np.clip(scratch, 0.0, 1.0, out=scratch)
    np.multiply(scratch, pixels, out=scratch)


def _reference_time(clock: Callable[[], float]) -> float:
    """The faster of two back-to-back runs: noise only ever adds time."""
    return min(_timed(reference_workload, 0.0, clock)[0] for _ in range(2))


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


def _timed(run: Callable[[], object], delay_fraction: float, clock: Callable[[], float]) -> tuple[float, object]:
    start = clock()
    value = run()
    if delay_fraction:  # busy-wait: a sleep would not show on the CPU clock
        until = clock() + (clock() - start) * delay_fraction
        while clock() < until:
            pass
    return clock() - start, value


def _median_steps(values: list[object]) -> dict[str, float]:
    steps = [timings for timings in (getattr(value, "timings", None) for value in values)
             if isinstance(timings, Mapping)]
    if not steps:
        return {}
    return {key: statistics.median(float(timings.get(key, 0.0)) for timings in steps) for key in steps[0]}


def measure(run: Callable[[], object], rounds: int, warmup: int = 1, delay_fraction: float = 0.0,
            clock: str = "wall", min_rounds: int = 3, max_seconds: float = 20.0) -> Timing:
    """Median time of ``run`` and of the reference workload over interleaved rounds on
    ``clock`` (see CLOCKS), after ``warmup`` untimed calls of each. Rounds stop early,
    after ``min_rounds``, once the stage has taken ``max_seconds`` of wall time, so a slow
    stage cannot blow the check's time budget. ``run`` must finish its own work (a GPU
    stage synchronises)."""
    if rounds < 1:
        raise ConfigError(f"rounds must be >= 1, got {rounds}")
    if clock not in CLOCKS:
        raise ConfigError(f"clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
    for _ in range(warmup):
        reference_workload()
        run()
    stage_times, reference_times, values = [], [], []
    started = time.perf_counter()
    while len(stage_times) < rounds:
        reference_times.append(_reference_time(CLOCKS[clock]))
        seconds, value = _timed(run, delay_fraction, CLOCKS[clock])
        stage_times.append(seconds)
        values.append(value)
        if len(stage_times) >= min_rounds and time.perf_counter() - started > max_seconds:
            break
    return Timing(statistics.median(stage_times), statistics.median(reference_times), len(stage_times), clock,
                  _median_steps(values))
