"""Stage harness: the smoke suite runs against the real f2n modules, unavailable and failing
stages are recorded (not raised), breakdowns are medians, suites are well formed."""

import re
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import seed_engine_cache

from f2n.benchmarks.machine import machine_class
from f2n.benchmarks.regression import measure_stage, run_suite
from f2n.benchmarks.report import GROUP_ORDER
from f2n.benchmarks.stages import Stage, require_module
from f2n.benchmarks.suites import SUITE_ENV, selected_suite, suite_names, suite_stages
from f2n.benchmarks.timing import measure
from f2n.cpu_features import native_bf16
from f2n.errors import ConfigError


def test_smoke_suite_runs_every_stage_on_the_current_modules() -> None:
    result = run_suite("smoke", suite_stages("smoke"), rounds=1, warmup=0)
    problems = {stage.key: stage.error or stage.unavailable for stage in result.stages if stage.seconds is None}
    assert problems == {}
    assert all(stage.seconds > 0 and stage.reference_seconds > 0 for stage in result.stages)


@pytest.mark.parametrize("suite", suite_names())
def test_suites_have_unique_keys_and_known_groups(suite: str) -> None:
    stages = suite_stages(suite)
    keys = [stage.key for stage in stages]
    assert len(keys) == len(set(keys))
    assert all(stage.group in GROUP_ORDER and stage.device in ("cpu", "cuda") for stage in stages)
    assert all(stage.output_megapixels > 0 for stage in stages if stage.group in ("sr", "peer"))


def test_suite_selection_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SUITE_ENV, "full")
    assert selected_suite() == "full" and selected_suite("smoke") == "smoke"
    monkeypatch.setenv(SUITE_ENV, "huge")
    with pytest.raises(ConfigError, match="'huge' is unknown; expected one of smoke, default, full"):
        selected_suite()


def test_selectors_match_a_stage_by_key_name_or_family() -> None:
    stage = Stage("tiled_sr/torch-fp32-cpu", "48x48", "sr", lambda: lambda: None)
    assert all(stage.matches(s) for s in ("tiled_sr/torch-fp32-cpu[48x48]", "tiled_sr/torch-fp32-cpu", "tiled_sr"))
    assert not any(stage.matches(s) for s in ("tiled_sr/torch", "sr", "tiled_sr/torch-fp32-cpu[64x64]"))


@pytest.fixture
def no_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about bookkeeping, not time: skip the reference workload."""
    monkeypatch.setattr("f2n.benchmarks.timing.reference_workload", lambda: None)


def test_missing_module_makes_a_stage_unavailable_and_an_exception_a_failure(no_reference: None) -> None:
    missing = measure_stage(Stage("ghost", "1", "io", lambda: require_module("f2n.no_such_module")), 1, 0)
    assert missing.seconds is None and "f2n.no_such_module cannot be imported" in missing.unavailable

    def broken() -> None:
        raise ValueError("tile went wrong")

    failed = measure_stage(Stage("broken", "1", "io", lambda: broken), 1, 0)
    assert failed.seconds is None and failed.error == "ValueError: tile went wrong"


def test_breakdown_is_the_median_per_step_of_the_reported_timings(no_reference: None) -> None:
    reports = iter([SimpleNamespace(timings={"tile": t, "total": 2 * t}) for t in (3.0, 1.0, 2.0)])
    timing = measure(lambda: next(reports), rounds=3, warmup=0)
    assert timing.breakdown == {"tile": 2.0, "total": 4.0}


def test_machine_class_names_cpu_and_cores_or_gpu() -> None:
    assert re.fullmatch(r"cpu-[a-z0-9-]+-\d+c-[a-z0-9]+|gpu-[a-z0-9-]+", machine_class())


def test_cpu_clock_leaves_out_time_spent_waiting(no_reference: None) -> None:
    """CPU stages are timed in CPU time, so time descheduled (here: asleep) is not counted."""
    assert measure(lambda: time.sleep(0.05), rounds=3, warmup=0, clock="cpu").seconds < 0.02
    assert measure(lambda: time.sleep(0.05), rounds=3, warmup=0, clock="wall").seconds >= 0.05


@pytest.mark.parametrize("architecture", ["gpen-512", "gpen-256", "gfpgan", "codeformer", "restoreformer"])
def test_face_prior_stages_build_networks_that_load_as_the_released_files(architecture: str) -> None:
    """Each bench prior's weights are recognised and loaded by the dispatcher (spandrel's
    loaders for GFPGAN/CodeFormer/RestoreFormer read the released hyperparameters from the
    shapes), so the timed network has the released architecture and size."""
    from f2n.benchmarks.stages import random_face_prior
    from f2n.weights.gpen import GPEN_BFR, gpen_hyperparameters
    from f2n.weights.networks import load_network

    prior = random_face_prior(architecture, torch.device("cpu"))
    state = prior.model.state_dict()
    kind, loaded = load_network(state, Path(architecture))
    assert kind == architecture.split("-")[0]
    assert sum(p.numel() for p in loaded.parameters()) == sum(p.numel() for p in prior.model.parameters())
    if kind == "gpen":  # the official run.sh flags: GPEN-BFR-256 is multiplier 1, narrow 0.5
        size = int(architecture.split("-")[1])
        assert gpen_hyperparameters(state, Path(architecture)) == {**GPEN_BFR[size], "style_dim": 512, "n_mlp": 8}


@pytest.mark.slow
def test_openvino_stages_of_the_default_suite_run_on_the_real_network(no_reference: None, real_sr_onnx: Path,
                                                                     isolated_f2n_home: Path) -> None:
    """The OpenVINO hand-over and tiled-SR stages set up and run (real Real-ESRGAN x4plus, its
    ONNX graph exported once per session and found in the engine cache); a bf16 stage may only be
    unavailable for the CPU's lack of bf16."""
    pytest.importorskip("openvino")
    seed_engine_cache(real_sr_onnx, isolated_f2n_home)
    cpu_bf16 = native_bf16()
    stages = [stage for stage in suite_stages("default") if "openvino" in stage.name]
    assert {stage.group for stage in stages} == {"handover", "sr"}
    for stage in stages:
        result = measure_stage(stage, rounds=1, warmup=0)
        if "bf16" in stage.name and not cpu_bf16:
            assert "AVX512-BF16 or AMX" in result.unavailable
        else:
            assert result.seconds is not None, f"{stage.key}: {result.error or result.unavailable}"
