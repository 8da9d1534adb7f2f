"""pytest-benchmark: the same Real-ESRGAN x4plus run by ncnn (CPU) and by plain PyTorch eager. See f2n.benchmarks.pytest_bench for how to run."""

import pytest
from pytest_bench import bench_stage, stage_params


@pytest.mark.parametrize("stage", stage_params("peer"))
def test_peers(benchmark, stage) -> None:
    bench_stage(benchmark, stage)
