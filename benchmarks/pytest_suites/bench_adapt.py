"""pytest-benchmark: one adaptation step. See f2n.benchmarks.pytest_bench for how to run."""

import pytest
from pytest_bench import bench_stage, stage_params


@pytest.mark.parametrize("stage", stage_params("adapt"))
def test_adapt(benchmark, stage) -> None:
    bench_stage(benchmark, stage)
