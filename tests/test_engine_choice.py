"""``--engine auto``: the rule as documented (a plain function of the platform), the probe
apart from it, and the choice named in the run's JSON report."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from f2n.cpu_features import native_bf16
from f2n.errors import ConfigError, EngineUnavailableError
from f2n.runtime import cli
from f2n.runtime.engine_choice import Platform, choose_engine, probe_platform, resolve_engine
from f2n.runtime.images import write_image


@pytest.mark.parametrize(("platform", "precision", "engine", "chosen"), [
    (Platform("cpu", openvino=True, cpu_bf16=True), None, "openvino", "bf16"),
    (Platform("cpu", openvino=True, cpu_bf16=True), "fp32", "openvino", "fp32"),
    (Platform("cpu", openvino=True, cpu_bf16=False), None, "openvino", "fp32"),
    (Platform("cpu", openvino=False, cpu_bf16=True), None, "torch", "fp32"),
    (Platform("cpu", openvino=False, cpu_bf16=True), "bf16", "torch", "bf16"),
    (Platform("cuda", tensorrt=True), None, "trt", "fp16"),
    (Platform("cuda", tensorrt=False), None, "torch", "fp16"),
    (Platform("cuda", tensorrt=False), "bf16", "torch", "bf16"),
])
def test_auto_follows_the_documented_rule(platform: Platform, precision: str | None, engine: str, chosen: str) -> None:
    choice = choose_engine(platform, precision)
    assert (choice.requested, choice.engine, choice.precision) == ("auto", engine, chosen)
    assert choice.reason


def test_auto_refuses_what_the_cpu_cannot_do() -> None:
    with pytest.raises(EngineUnavailableError, match="bf16 needs a CPU with AVX512-BF16 or AMX"):
        choose_engine(Platform("cpu", openvino=True, cpu_bf16=False), "bf16")
    with pytest.raises(ConfigError, match="fp16 needs --device cuda"):
        choose_engine(Platform("cpu", openvino=True, cpu_bf16=True), "fp16")


def test_a_named_engine_is_what_the_user_forced() -> None:
    choice = resolve_engine("onnx", "cpu", None)
    assert (choice.engine, choice.precision, choice.requested) == ("onnx", "fp32", "onnx")
    assert resolve_engine("torch", "cuda", None).precision == "fp16"


def test_probe_without_openvino_leads_auto_to_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` raises ImportError
    assert probe_platform("cpu") == Platform("cpu", cpu_bf16=native_bf16())
    assert resolve_engine("auto", "cpu", None).engine == "torch"


def test_probe_reads_the_cpus_bf16_from_the_shared_probe() -> None:
    pytest.importorskip("openvino")
    assert probe_platform("cpu") == Platform("cpu", openvino=True, cpu_bf16=native_bf16())


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
