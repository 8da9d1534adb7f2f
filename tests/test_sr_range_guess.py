"""Issue 26: the SR value range is sometimes guessed from a file name (or defaults to [0, 1]);
a renamed F2N-ESRGAN file then runs in the wrong range. The summary line and the report say when
the range is a guess."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from f2n.runtime import cli
from f2n.runtime.images import write_image
from f2n.weights.checkpoint import VALUE_RANGE_META, WeightFile
from f2n.weights.sr import resolve_value_range


def test_the_summary_and_report_say_when_the_range_is_a_guess(tmp_path: Path, tiny_weights: Path) -> None:
    photo, report = tmp_path / "flat.png", tmp_path / "r.json"
    write_image(photo, np.full((16, 16, 3), 0.4, np.float32))
    result = CliRunner().invoke(cli.command, [str(photo), "--out", str(tmp_path / "o.png"), "--checkpoint",
                                              str(tiny_weights), "--no-adapt", "--engine", "torch", "--report",
                                              str(report), "--tile", "32", "--tile-overlap", "8", "--no-progress"])
    assert result.exit_code == 0, result.output
    summary = result.output.strip().splitlines()[-1]
    assert "SR value range unit (a guess: tiny.safetensors records no" in summary, summary
    assert summary.endswith("give --sr-range if it is wrong)")
    assert json.loads(report.read_text())["photos"][0]["settings"]["sr_range_guessed"] is True


@pytest.mark.parametrize("name, requested, guessed", [("F2NESRGAN.pth", None, True), ("renamed.pth", None, True),
                                                      ("renamed.pth", "signed", False)])
def test_only_names_and_the_default_are_guesses(name: str, requested: str | None, guessed: bool) -> None:
    choice = resolve_value_range(Path(name), WeightFile({}, {}), None, requested)
    assert choice.guessed is guessed and ("a guess" in str(choice)) is guessed


def test_a_recorded_range_is_no_guess(tmp_path: Path) -> None:
    choice = resolve_value_range(Path("x.safetensors"), WeightFile({}, {VALUE_RANGE_META: "signed"}), None)
    assert choice.value_range == "signed" and not choice.guessed
