"""The adaptation stage (issue 28's "<= 30 s per photo"): it times the default pipeline's own
adaptation with every step of the budget, on the default number of pairs, and says when the
target is missed. Timings are not asserted (speed lives in benchmarks, not in unit tests)."""

import torch
from click.testing import CliRunner

from f2n.benchmarks import adaptation
from f2n.benchmarks.cli import main
from f2n.runtime.adapt import DEFAULT_STEPS
from f2n.runtime.build import DEFAULT_PATCHES_PER_IMAGE


def test_every_step_of_the_budget_runs_on_the_default_pairs() -> None:
    # a step size that makes the held-out loss worse at once: early stopping would end after 2 steps
    threads = torch.get_num_threads()
    timing = adaptation.measure_adaptation("tiny", threads=1, requested={"lr": 1.0})
    assert torch.get_num_threads() == threads  # given back to the session
    assert timing.steps == DEFAULT_STEPS == len(timing.step_seconds)
    assert timing.pairs == DEFAULT_PATCHES_PER_IMAGE
    assert timing.adapt_seconds >= sum(timing.step_seconds) > 0 and timing.face_stage_seconds > 0


def test_a_run_over_the_target_says_so_and_fails(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(adaptation, "TARGET_SECONDS", 0.0)  # any real run is over a zero target
    result = CliRunner().invoke(main, ["adaptation", "--network", "tiny", "--threads", "1", "--out-dir", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert "not met" in result.output and "target <= 0 s" in result.output
    assert "not met" in (tmp_path / next(p.name for p in tmp_path.iterdir())).read_text()
