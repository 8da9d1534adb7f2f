"""pytest-benchmark: face detection, alignment, the GPEN face prior (random weights) and MaskNet. See f2n.benchmarks.pytest_bench for how to run."""

import pytest
from pytest_bench import bench_stage, stage_params


@pytest.mark.parametrize("stage", stage_params("face"))
def test_face(benchmark, stage) -> None:
    bench_stage(benchmark, stage)
