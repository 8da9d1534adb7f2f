"""pytest-benchmark: tiled x4 SR per engine and precision. See f2n.benchmarks.pytest_bench for how to run."""

import pytest
from pytest_bench import bench_stage, stage_params


@pytest.mark.parametrize("stage", stage_params("sr"))
def test_sr(benchmark, stage) -> None:
    bench_stage(benchmark, stage)
