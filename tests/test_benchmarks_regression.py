"""The latency regression check: the comparison, the delay hook and the CLI's exit codes.

The pass/fail proof times a synthetic stage that does exactly the reference workload,
so its ratio stays near 1 however loaded the machine is, through the same
``run_suite`` + ``compare`` path that ``f2n-bench check`` uses."""

import json
from dataclasses import replace
from functools import partial

import pytest
from click.testing import CliRunner

from f2n.benchmarks import cli
from f2n.benchmarks.cli import main
from f2n.benchmarks.machine import machine_class
from f2n.benchmarks.regression import (
    BASELINE_DIR,
    StageResult,
    SuiteResult,
    compare,
    confirmed_failures,
    load_result,
    run_suite,
    save_result,
)
from f2n.benchmarks.stages import Stage
from f2n.benchmarks.timing import INJECT_DELAY_ENV, injected_delays, reference_workload
from f2n.errors import ConfigError

MACHINE = {"machine_class": "cpu-test-2c", "cpu": "test", "cores": 2, "torch_threads": 2, "gpu": "none",
           "torch": "x", "python": "3"}


def _suite(**ratios: float) -> SuiteResult:
    """A result whose stage ``name`` took ``ratio`` x a 10 ms reference."""
    return SuiteResult("default", 5, 1, 1, MACHINE, tuple(
        StageResult(f"{name}[1x1]", "sr", "cpu", seconds=ratio * 0.01, reference_seconds=0.01, clock="cpu")
        for name, ratio in ratios.items()))


def test_compare_fails_only_the_stage_beyond_the_threshold_and_names_both_figures() -> None:
    failures = compare(_suite(detect=2.6, tiled=1.2), _suite(detect=2.0, tiled=1.0))
    assert len(failures) == 1
    assert failures[0].startswith("detect[1x1]: ")
    assert "2.60x reference" in failures[0] and "baseline 20.0 ms = 2.00x reference" in failures[0]
    assert "+30%" in failures[0]


def test_compare_counts_faster_stages_as_passing() -> None:
    assert compare(_suite(detect=1.0, tiled=0.5), _suite(detect=2.0, tiled=1.0)) == []


def test_compare_fails_stages_that_vanished_or_raised() -> None:
    baseline = _suite(detect=1.0, encode=1.0, decode=1.0)
    current = SuiteResult("default", 5, 1, 1, MACHINE, (
        StageResult("detect[1x1]", "face", "cpu", unavailable="f2n.runtime.face.detect cannot be imported"),
        StageResult("decode[1x1]", "io", "cpu", error="InputImageError: bad"),
    ))
    failures = compare(current, baseline)
    assert any(line.startswith("detect[1x1]: in the baseline but unavailable now") for line in failures)
    assert any(line.startswith("encode[1x1]: in the baseline but not in this run") for line in failures)
    assert any(line.startswith("decode[1x1]: failed: InputImageError") for line in failures)


def test_compare_refuses_a_baseline_measured_with_other_threads() -> None:
    with pytest.raises(ConfigError, match="baseline was measured with 2 thread.*this run with 1"):
        compare(_suite(detect=1.0), replace(_suite(detect=1.0), threads=2))


def test_a_stage_slow_once_is_measured_again_and_passes_when_the_new_figure_is_within_limits() -> None:
    baseline = _suite(detect=2.0, tiled=1.0)
    asked: list[tuple[str, ...]] = []

    def remeasure(keys: tuple[str, ...]) -> SuiteResult:
        asked.append(keys)
        return _suite(detect=2.1)

    merged, failures = confirmed_failures(_suite(detect=2.6, tiled=1.0), baseline, remeasure)
    assert failures == [] and asked == [("detect[1x1]",)]
    assert merged.by_key()["detect[1x1]"].ratio == pytest.approx(2.1)


def test_a_stage_slow_in_every_measurement_fails_with_its_fastest_figure() -> None:
    baseline = _suite(detect=2.0, tiled=1.0)
    figures = iter([2.8, 2.7])
    asked: list[tuple[str, ...]] = []

    def remeasure(keys: tuple[str, ...]) -> SuiteResult:
        asked.append(keys)
        return _suite(detect=next(figures))

    _, failures = confirmed_failures(_suite(detect=2.6, tiled=1.2), baseline, remeasure, confirmations=2)
    assert asked == [("detect[1x1]",), ("detect[1x1]",)]
    assert len(failures) == 1 and "2.60x reference" in failures[0] and "+30%" in failures[0]


def test_failed_stages_are_not_measured_again() -> None:
    current = SuiteResult("default", 5, 1, 1, MACHINE, (StageResult("detect[1x1]", "face", "cpu", error="E: bad"),))
    _, failures = confirmed_failures(current, _suite(detect=1.0), lambda keys: pytest.fail(f"re-measured {keys}"))
    assert failures == ["detect[1x1]: failed: E: bad"]


def test_injected_delays_parse_and_reject_malformed_items() -> None:
    assert injected_delays({INJECT_DELAY_ENV: "detect:0.5, tiled_sr/torch-fp32-cpu[64x64]:1"}) == {
        "detect": 0.5, "tiled_sr/torch-fp32-cpu[64x64]": 1.0}
    assert injected_delays({}) == {}
    for bad in ("detect", "detect:fast", ":0.5", "detect:-1"):
        with pytest.raises(ConfigError, match=INJECT_DELAY_ENV):
            injected_delays({INJECT_DELAY_ENV: bad})


def _synthetic_stages() -> tuple[Stage, ...]:
    return (Stage("synthetic/a", "ref", "sr", partial(lambda: reference_workload)),
            Stage("synthetic/b", "ref", "sr", partial(lambda: reference_workload)))


def test_check_fails_a_stage_made_50_percent_slower_and_passes_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(INJECT_DELAY_ENV, raising=False)
    def measure(keys: tuple[str, ...] = ()) -> SuiteResult:  # as f2n-bench check measures and re-measures
        return run_suite("synthetic", [stage for stage in _synthetic_stages() if not keys or stage.key in keys],
                         rounds=3, warmup=1)

    baseline = measure()
    assert confirmed_failures(measure(), baseline, measure)[1] == []

    monkeypatch.setenv(INJECT_DELAY_ENV, "synthetic/b:0.5")
    failures = confirmed_failures(measure(), baseline, measure)[1]
    assert len(failures) == 1 and failures[0].startswith("synthetic/b[ref]: ")


def test_a_stage_whose_baseline_reference_rounds_ran_slow_is_not_failed_for_it(tmp_path) -> None:
    """The CI failure this prevents: the baseline's reference rounds beside ``encode`` came
    out slow, so its recorded ratio was low, and a later run where encode itself got
    faster failed at +25 %."""
    def stage(name: str, seconds: float, reference: float) -> StageResult:
        return StageResult(f"{name}[1x1]", "io", "cpu", seconds=seconds, reference_seconds=reference, clock="cpu")

    baseline = SuiteResult("default", 5, 1, 1, MACHINE, (
        stage("decode", 0.002, 0.010), stage("detect", 0.020, 0.010), stage("encode", 0.100, 0.0135)))
    path = tmp_path / "base.json"
    save_result(baseline, path)  # as committed: each stage with the reference of its own rounds
    current = SuiteResult("default", 5, 1, 1, MACHINE, (
        stage("decode", 0.002, 0.010), stage("detect", 0.020, 0.010), stage("encode", 0.095, 0.010)))
    # Own references: 7.4x -> 9.5x, +28 %; against each run's (10 ms): 10x -> 9.5x.
    assert compare(current, load_result(path)) == []
    slower = replace(current, stages=current.stages[:2] + (stage("encode", 0.130, 0.010),))
    failures = compare(slower, load_result(path))  # a real +30 % fails by both measures
    assert len(failures) == 1 and failures[0].startswith("encode[1x1]: ") and "+30%" in failures[0]


def test_results_round_trip_through_json(tmp_path) -> None:
    result = _suite(detect=2.0)
    path = tmp_path / "base.json"
    save_result(result, path)
    assert load_result(path) == result
    payload = json.loads(path.read_text())
    payload["format"] = 999  # an older or newer layout is refused, not misread
    path.write_text(json.dumps(payload))
    with pytest.raises(ConfigError, match="format 999"):
        load_result(path)


def test_cli_record_then_check_exit_codes(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real smoke-suite MaskNet stage through the CLI: record, a 3x-slowed check fails with
    one line naming the stage, an unchanged check passes (threshold widened: here it is the
    exit code under test, not timing noise on a shared machine)."""
    runner = CliRunner()
    baseline = tmp_path / f"{machine_class()}.json"
    common = ["--suite", "smoke", "--only", "masknet", "--rounds", "3", "--baseline", str(baseline)]
    monkeypatch.delenv(INJECT_DELAY_ENV, raising=False)
    recorded = runner.invoke(main, ["record", *common])
    assert recorded.exit_code == 0, recorded.output
    assert [stage.key for stage in load_result(baseline).stages] == ["masknet[2x32x32]"]

    monkeypatch.setenv(INJECT_DELAY_ENV, "masknet:3")
    slowed = runner.invoke(main, ["check", *common])
    assert slowed.exit_code == 1
    failing = [line for line in slowed.output.splitlines() if line.startswith("masknet[2x32x32]: ")]
    assert len(failing) == 1 and "limit +25%" in failing[0]
    assert slowed.output.count("measuring again: masknet[2x32x32]") == 2  # confirmed twice before failing

    monkeypatch.delenv(INJECT_DELAY_ENV)
    unchanged = runner.invoke(main, ["check", *common, "--threshold", "2"])
    assert unchanged.exit_code == 0, unchanged.output


def test_cli_check_without_baseline_is_one_line_and_config_exit_code(tmp_path) -> None:
    result = CliRunner().invoke(main, ["check", "--baseline", str(tmp_path / "none.json")])
    assert result.exit_code == ConfigError.exit_code
    assert result.output.strip().splitlines() == [f"error: no benchmark result at {tmp_path / 'none.json'}; "
                                                  "record one with `f2n-bench record`"]


def test_cli_check_on_a_class_without_baseline_says_so_and_checks_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU class with no committed baseline (e.g. no bf16 where the baseline's CPU had it) is not
    compared with another class's figures: one line, exit 0, no stage measured."""
    monkeypatch.setattr(cli, "machine_class", lambda: "cpu-unknown-model-3c-avx2")
    monkeypatch.setattr(cli, "baseline_path", lambda: BASELINE_DIR / "cpu-unknown-model-3c-avx2.json")
    monkeypatch.setattr(cli, "_measure", None)  # measuring would raise
    result = CliRunner().invoke(main, ["check"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("no latency baseline for machine class cpu-unknown-model-3c-avx2")
