"""``--engine auto``: the rule as documented (a plain function of the platform), the probe
apart from it, and the choice named in the run's JSON report."""

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from f2n.cpu_features import native_bf16
from f2n.errors import ConfigError, EngineUnavailableError
from f2n.runtime import cli
from f2n.runtime.engine_choice import (
    QUALITY_FLOOR_DB,
    Measurement,
    Platform,
    choose_engine,
    cpu_candidates,
    probe_platform,
    resolve_engine,
)
from f2n.runtime.images import write_image


@pytest.mark.parametrize(("platform", "precision", "engine", "chosen"), [
    (Platform("cpu", openvino=True, cpu_bf16=True, ncnn=True), None, "openvino", "bf16"),
    (Platform("cpu", openvino=True, cpu_bf16=True, ncnn=True), "fp32", "ncnn", "fp32"),
    (Platform("cpu", openvino=True, cpu_bf16=True, ncnn=True), "bf16", "openvino", "bf16"),
    (Platform("cpu", openvino=True, cpu_bf16=False, ncnn=True), None, "ncnn", "fp32"),
    (Platform("cpu", openvino=True, cpu_bf16=False), None, "openvino", "fp32"),
    (Platform("cpu", openvino=False, cpu_bf16=True), None, "torch", "fp32"),
    (Platform("cpu", openvino=False, cpu_bf16=True), "bf16", "torch", "bf16"),
    (Platform("cuda", tensorrt=True), None, "trt", "fp16"),
    (Platform("cuda", tensorrt=False), None, "torch", "fp16"),
    (Platform("cuda", tensorrt=False), "bf16", "torch", "bf16"),
])
def test_without_measurements_auto_follows_the_documented_rule(platform: Platform, precision: str | None, engine: str,
                                                               chosen: str) -> None:
    choice = choose_engine(platform, precision)
    assert (choice.requested, choice.engine, choice.precision) == ("auto", engine, chosen)
    assert choice.reason


def test_auto_refuses_what_the_cpu_cannot_do() -> None:
    for platform in (Platform("cpu", openvino=True, cpu_bf16=False, ncnn=True), Platform("cpu")):
        with pytest.raises(EngineUnavailableError, match="bf16 needs a CPU with AVX512-BF16 or AMX"):
            choose_engine(platform, "bf16", [Measurement("torch", "bf16", 0.0, 1.0, 60.0)])
    with pytest.raises(ConfigError, match="fp16 needs --device cuda"):
        choose_engine(Platform("cpu", openvino=True, cpu_bf16=True), "fp16")


BF16_CPU = Platform("cpu", openvino=True, cpu_bf16=True, ncnn=True)
AVX2_CPU = Platform("cpu", openvino=True, cpu_bf16=False, ncnn=True)
# Shaped like issue 27's figures (AVX2 EPYC: ncnn 1.24x OpenVINO fp32) and a bf16 CPU's (OpenVINO bf16 1.41x ncnn).
AVX2_FIGURES = [Measurement("ncnn", "fp32", 0.5, 150.0, 120.0), Measurement("openvino", "fp32", 1.5, 186.0, 110.0),
                Measurement("torch", "fp32", 0.01, 220.0, math.inf)]
BF16_FIGURES = [Measurement("openvino", "bf16", 1.5, 75.0, 51.9), Measurement("torch", "bf16", 0.01, 110.0, 50.4),
                Measurement("ncnn", "fp32", 0.5, 105.0, 120.0), Measurement("openvino", "fp32", 1.5, 150.0, 110.0),
                Measurement("torch", "fp32", 0.01, 200.0, math.inf)]


def test_measured_auto_picks_the_fastest_per_photo_and_says_why() -> None:
    choice = choose_engine(AVX2_CPU, None, AVX2_FIGURES)
    assert (choice.engine, choice.precision) == ("ncnn", "fp32")
    assert choice.reason.startswith("fastest measured on this CPU class") and "next openvino fp32" in choice.reason
    assert (choose_engine(BF16_CPU, None, BF16_FIGURES).engine, choose_engine(BF16_CPU, None, BF16_FIGURES).precision) \
        == ("openvino", "bf16")


def test_measured_auto_weighs_the_hand_over_with_the_tiles() -> None:
    """Per photo: a slow hand-over (an OpenVINO recompile) loses to slightly slower tiles."""
    figures = [Measurement("openvino", "bf16", 9.0, 100.0, 55.0), Measurement("torch", "bf16", 0.01, 110.0, 55.0)]
    assert choose_engine(BF16_CPU, None, figures).engine == "torch"
    figures[0] = Measurement("openvino", "bf16", 0.5, 100.0, 55.0)
    assert choose_engine(BF16_CPU, None, figures).engine == "openvino"


def test_measured_auto_keeps_the_quality_floor_and_the_asked_precision() -> None:
    below = [Measurement("openvino", "bf16", 0.1, 10.0, QUALITY_FLOOR_DB - 0.1), *BF16_FIGURES[2:]]
    choice = choose_engine(BF16_CPU, None, below)
    assert (choice.engine, choice.precision) == ("ncnn", "fp32") and "under the quality floor: openvino bf16" in choice.reason
    assert choose_engine(BF16_CPU, "fp32", BF16_FIGURES).precision == "fp32"
    assert choose_engine(BF16_CPU, "bf16", BF16_FIGURES[2:]).engine == "openvino"  # no bf16 figure: the rule
    failed = [Measurement("ncnn", "fp32", error="RuntimeError: x"), *AVX2_FIGURES[1:]]
    assert choose_engine(AVX2_CPU, None, failed).engine == "openvino"
    without_ncnn = Platform("cpu", openvino=True)  # a figure of an engine not installed now is not a candidate
    assert choose_engine(without_ncnn, None, AVX2_FIGURES).engine == "openvino"


def test_candidates_never_include_emulated_bf16() -> None:
    assert cpu_candidates(AVX2_CPU) == (("ncnn", "fp32"), ("openvino", "fp32"), ("torch", "fp32"))
    assert ("torch", "bf16") in cpu_candidates(BF16_CPU) and all(p == "bf16" for _, p in cpu_candidates(BF16_CPU, "bf16"))


def test_a_named_engine_is_what_the_user_forced() -> None:
    choice = resolve_engine("onnx", "cpu", None)
    assert (choice.engine, choice.precision, choice.requested) == ("onnx", "fp32", "onnx")
    assert resolve_engine("torch", "cuda", None).precision == "fp16"


def test_probe_without_openvino_or_ncnn_leads_auto_to_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` raises ImportError
    monkeypatch.setitem(sys.modules, "ncnn", None)
    assert probe_platform("cpu") == Platform("cpu", cpu_bf16=native_bf16())
    assert resolve_engine("auto", "cpu", None).engine == "torch"


def test_probe_reads_the_cpus_bf16_from_the_shared_probe() -> None:
    pytest.importorskip("openvino")
    pytest.importorskip("ncnn")
    assert probe_platform("cpu") == Platform("cpu", openvino=True, cpu_bf16=native_bf16(), ncnn=True)


@pytest.fixture()
def tiny_run(tiny_weights: Path, tmp_path: Path) -> list[str]:
    write_image(tmp_path / "flat.png", np.full((24, 20, 3), 0.4, np.float32))
    return [str(tmp_path / "flat.png"), "--out", str(tmp_path / "sr.png"), "--checkpoint",
            str(tiny_weights), "--no-adapt", "--no-progress", "--device", "cpu"]


def test_the_report_names_the_engine_auto_chose_and_why(tiny_run: list[str], tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.command, [*tiny_run, "--report", str(tmp_path / "r.json")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    expected = choose_engine(probe_platform("cpu"))  # the rule itself is tested above
    assert report["engine"] == {"requested": "auto", "engine": expected.engine, "precision": expected.precision,
                                "reason": expected.reason}
    summary = result.output.strip().splitlines()[-1]  # the engine, then the SR value range
    assert f"; engine {expected.engine} {expected.precision} ({expected.reason}); SR value range unit" in summary
    assert report["photos"][0]["settings"]["adapt"]["precision"] == "fp32"  # the CPU adapts in fp32, even for a bf16 engine


def test_forcing_openvino_without_it_is_one_line(tiny_run: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)
    result = CliRunner().invoke(cli.command, [*tiny_run, "--engine", "openvino"])
    assert result.exit_code == EngineUnavailableError.exit_code
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("error: --engine openvino needs the openvino package") and "Traceback" not in result.output


def test_bf16_on_a_cpu_without_it_is_one_line_from_the_cli(tiny_run: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("openvino")
    monkeypatch.setattr("f2n.cpu_features.native_bf16", lambda: False)  # the probe, not the engine
    for engine in ("openvino", "auto", "torch"):
        result = CliRunner().invoke(cli.command, [*tiny_run, "--engine", engine, "--precision", "bf16"])
        assert result.exit_code == EngineUnavailableError.exit_code, result.output
        assert "needs a CPU with AVX512-BF16 or AMX" in result.output.strip().splitlines()[-1]
        assert "Traceback" not in result.output
