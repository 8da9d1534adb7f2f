"""benchmarks/gpu/verify.py (what benchmarks/gpu/verify.sh runs on a GPU machine), in its
--dry-run mode: every part's logic on the CPU with tiny networks, the report written
after each part, a failing part recorded while the others still run, a part without
time left skipped. (The shell script itself is dry-run by hand: docs/benchmarks.md.)"""

import importlib.util
import json
from pathlib import Path

import pytest

VERIFY = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu" / "verify.py"


@pytest.fixture(scope="module")
def verify():
    spec = importlib.util.spec_from_file_location("f2n_gpu_verify", VERIFY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parts(out: Path) -> dict:
    return json.loads((out / "cpu-dry-run.json").read_text())["parts"]


def test_dry_run_measures_every_part_and_writes_the_table(verify, tmp_path: Path) -> None:
    names = ["env", "adapt", "sr", "handover", "gpen", "e2e"]
    code = verify.main(["--dry-run", "--out", str(tmp_path), "--parts", ",".join(names), "--engines", "torch eager,torch compiled", "--seconds", "600"])
    assert code == 0
    assert {name: record["status"] for name, record in parts(tmp_path).items()} == dict.fromkeys(names, "ok")
    table = (tmp_path / "cpu-dry-run.md").read_text()
    for row in ("40² LR -> 160²", "set_weights(θ_n): torch eager", "one adaptation step", "compiled bf16 step, 5 faces", "GPEN 64² one face", "end to end, one face"):
        assert row in table


def test_a_failing_part_is_recorded_and_the_next_still_runs(verify, tmp_path: Path) -> None:
    code = verify.main(["--dry-run", "--out", str(tmp_path), "--parts", "handover,env"])
    recorded = parts(tmp_path)
    assert code == 1
    assert recorded["handover"]["status"] == "failed: RuntimeError: no engine was built by the sr part"
    assert recorded["env"]["status"] == "ok" and "Traceback" in (tmp_path / "cpu-dry-run.md").read_text()


def test_a_part_without_time_left_is_skipped_not_started(verify, tmp_path: Path) -> None:
    assert verify.main(["--dry-run", "--out", str(tmp_path), "--parts", "adapt", "--seconds", "0"]) == 0
    assert parts(tmp_path)["adapt"]["status"].startswith("skipped: ")
