"""Glue between the stage suites and pytest-benchmark, shared by ``benchmarks/pytest_suites/bench_*.py``.

Run: ``python -m pytest benchmarks/pytest_suites/bench_sr.py --benchmark-enable`` (the project's pytest
configuration disables benchmarks, so without the flag each stage runs once as a smoke
test); ``F2N_BENCH_SET=full`` picks the GPU sizes."""

import pytest

from f2n.benchmarks.stages import Stage, StageUnavailable
from f2n.benchmarks.suites import suite_stages
from f2n.errors import EngineUnavailableError

ROUNDS = 5


def stage_params(*groups: str) -> list:
    """The selected suite's stages of ``groups`` as pytest parameters named by their keys."""
    return [pytest.param(stage, id=stage.key) for stage in suite_stages() if stage.group in groups]


def bench_stage(benchmark, stage: Stage) -> None:
    """Set the stage up outside the timing, then time ROUNDS calls after one warm-up."""
    try:
        run = stage.setup()
    except (StageUnavailable, EngineUnavailableError) as reason:
        pytest.skip(str(reason))
    benchmark.group = stage.group
    benchmark.extra_info.update(device=stage.device, output_megapixels=stage.output_megapixels)
    benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=1)
