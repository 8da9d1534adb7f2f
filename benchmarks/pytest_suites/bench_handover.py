"""pytest-benchmark: handing a photo's adapted weights to each engine. See f2n.benchmarks.pytest_bench for how to run."""

import pytest
from pytest_bench import bench_stage, stage_params


@pytest.mark.parametrize("stage", stage_params("handover"))
def test_handover(benchmark, stage) -> None:
    bench_stage(benchmark, stage)
