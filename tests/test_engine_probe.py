"""The probe behind ``--engine auto`` on the CPU: real engines timed on a tiny network, cached
per CPU class and architecture, measured again only when needed; the CLI reports the measured choice.
(The choice rule itself is tested with given figures in tests/test_engine_choice.py.)"""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from f2n.cpu_features import this_cpu_class
from f2n.errors import ConfigError, EngineUnavailableError
from f2n.nets import RRDBNet
from f2n.runtime import cli, engine_probe
from f2n.runtime.build import make_engine
from f2n.runtime.engine_choice import QUALITY_FLOOR_DB
from f2n.runtime.images import write_image
from f2n.weights import load_sr_network

pytest.importorskip("ncnn")


@pytest.fixture()
def loaded(tiny_weights: Path):
    return load_sr_network(tiny_weights)


def engines_made(loaded) -> tuple[list[tuple[str, str]], engine_probe.MakeEngine]:
    made: list[tuple[str, str]] = []

    def make(name: str, precision: str):
        made.append((name, precision))
        return make_engine(name, loaded, device="cpu", precision=precision, tile=64, threads=1)

    return made, make


def test_probe_times_real_engines_once_and_caches_them(loaded, isolated_f2n_home: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    candidates = (("ncnn", "fp32"), ("torch", "fp32"))
    made, make = engines_made(loaded)
    first = engine_probe.cached_measurements(loaded.model, candidates, make)
    assert made == list(candidates)
    assert [(m.engine, m.precision) for m in first] == list(candidates)
    for measurement in first:
        assert not measurement.error and measurement.seconds_per_megapixel > 0 and measurement.handover_seconds > 0
        assert measurement.psnr_db >= QUALITY_FLOOR_DB  # fp32 engines: the torch fp32 output, up to rounding
    assert math.isinf(first[1].psnr_db)  # torch fp32 is the reference itself
    path = engine_probe.cache_path(loaded.model)
    assert path.parent == isolated_f2n_home / "engine_probe" and path.name.startswith(this_cpu_class())

    made.clear()
    assert engine_probe.cached_measurements(loaded.model, candidates, make) == first and made == []  # from the cache
    engine_probe.cached_measurements(loaded.model, (("ncnn", "fp32"), ("openvino", "bf16")), make)
    assert made == [("openvino", "bf16")]  # only the one not measured yet

    made.clear()
    monkeypatch.setattr(engine_probe, "versions", lambda: {"torch": "another"})
    engine_probe.cached_measurements(loaded.model, candidates, make)
    assert made == list(candidates)  # a library changed: measured again


def test_a_candidate_that_cannot_run_is_recorded_not_raised(loaded) -> None:
    def make(name: str, precision: str):
        raise EngineUnavailableError(f"{name} is not here")

    (measurement,) = engine_probe.cached_measurements(loaded.model, (("ncnn", "fp32"),), make)
    assert measurement.error == "EngineUnavailableError: ncnn is not here"


def test_the_architecture_not_the_values_keys_the_cache() -> None:
    torch.manual_seed(0)
    one, other = RRDBNet(num_block=1, num_feat=8, num_grow_ch=4), RRDBNet(num_block=1, num_feat=8, num_grow_ch=4)
    assert engine_probe.architecture(one) == engine_probe.architecture(other)
    assert engine_probe.architecture(one) != engine_probe.architecture(RRDBNet(num_block=2, num_feat=8, num_grow_ch=4))
    assert engine_probe.architecture(one) != engine_probe.architecture(
        RRDBNet(num_block=1, num_feat=8, num_grow_ch=4, value_range="signed"))


def test_cli_auto_runs_the_measured_choice_and_reports_why(tiny_weights: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("F2N_ENGINE_PROBE", "1")
    monkeypatch.setenv("F2N_NCNN_VULKAN", "0")
    write_image(tmp_path / "flat.png", np.full((24, 20, 3), 0.4, np.float32))
    args = [str(tmp_path / "flat.png"), "--out", str(tmp_path / "sr.png"), "--checkpoint", str(tiny_weights),
            "--no-adapt", "--no-progress", "--device", "cpu", "--precision", "fp32", "--report", str(tmp_path / "r.json")]
    result = CliRunner().invoke(cli.command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    chosen = json.loads((tmp_path / "r.json").read_text())["engine"]
    cache = json.loads(engine_probe.cache_path(load_sr_network(tiny_weights).model).read_text())
    figures = {(m["engine"], m["precision"]): m for m in cache["measurements"] if not m["error"]}
    assert {precision for _, precision in figures} == {"fp32"}  # --precision fp32: fp32 candidates only
    fastest = min(figures.values(), key=lambda m: m["handover_seconds"] + m["seconds_per_megapixel"] * 0.065536)
    assert (chosen["engine"], chosen["precision"]) == (fastest["engine"], "fp32")
    assert chosen["reason"].startswith("fastest measured on this CPU class")
    assert cache["machine_class"] == this_cpu_class()


def test_probe_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("F2N_ENGINE_PROBE", "0")
    assert not engine_probe.probe_enabled()
    monkeypatch.setenv("F2N_ENGINE_PROBE", "yes")
    with pytest.raises(ConfigError, match="must be 1 or 0, got .yes."):
        engine_probe.probe_enabled()


PROBE_IN_A_PROCESS = """
import sys, time
from pathlib import Path
from f2n.export.torch_engine import TorchEngine
from f2n.runtime import engine_probe
from f2n.weights import load_sr_network

weights, log, go = map(Path, sys.argv[1:4])
model = load_sr_network(weights).model

def make(name, precision):
    with log.open("a") as handle:
        handle.write(f"{name} {precision}\\n")
    time.sleep(1.0)  # a probe takes ~20 s for x4plus: the other worker starts meanwhile
    return TorchEngine(model)

while not go.exists():
    time.sleep(0.01)
(measurement,) = engine_probe.cached_measurements(model, (("torch", "fp32"),), make)
print(measurement.engine, measurement.seconds_per_megapixel)
"""


def test_workers_starting_together_probe_once_and_read_the_same_figures(tiny_weights: Path, tmp_path: Path,
                                                                         isolated_f2n_home: Path) -> None:
    """f2n-batch's workers on a new machine class: one process measures, the others wait for its
    figures (side by side they would each time the others' load, and write the cache in turn)."""
    import os
    import subprocess
    import sys

    log, go = tmp_path / "made.txt", tmp_path / "go"
    env = {**os.environ, "F2N_HOME": str(isolated_f2n_home), "OMP_NUM_THREADS": "1"}
    workers = [subprocess.Popen([sys.executable, "-c", PROBE_IN_A_PROCESS, str(tiny_weights), str(log), str(go)],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    go.touch()
    results = [worker.communicate(timeout=120) for worker in workers]
    assert all(worker.returncode == 0 for worker in workers), [err[-500:] for _, err in results]
    assert log.read_text().splitlines() == ["torch fp32"]  # measured by one process only
    assert len({out for out, _ in results}) == 1  # every worker got the same figures
