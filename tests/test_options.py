"""The pipeline's options exist once: f2n-adapt-and-run and f2n-batch take every field of
``PipelineOptions`` as the same option (flag, type, choices, default), their choices are the
registries', a bad value is one ConfigError, and f2n-batch refuses an oracle prior (one
ground truth for every photo) in one line, exit 5, before writing anything."""

from dataclasses import MISSING, fields
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from f2n.errors import ConfigError
from f2n.export.engines import ENGINES
from f2n.runtime import cli as single
from f2n.runtime.batch import cli as batch
from f2n.runtime.methods import METHODS
from f2n.runtime.options import PipelineOptions


def _params(command: click.Command) -> dict[str, click.Parameter]:
    return {param.name: param for param in command.params}


@pytest.mark.parametrize("command", [single.command, batch.command], ids=["f2n-adapt-and-run", "f2n-batch"])
def test_every_option_field_is_the_same_option_of_both_commands(command: click.Command) -> None:
    params = _params(command)
    reference = _params(single.command)
    for item in fields(PipelineOptions):
        param = params[item.name]
        default = item.default if item.default is not MISSING else item.default_factory()
        assert param.default == default, item.name
        assert param.opts == reference[item.name].opts, item.name
        assert repr(param.type) == repr(reference[item.name].type), item.name
        assert param.multiple == reference[item.name].multiple and param.is_flag == reference[item.name].is_flag


def test_choices_come_from_the_registries() -> None:
    params = _params(single.command)
    assert tuple(params["engine"].type.choices) == ("auto", *ENGINES)
    assert tuple(params["adapt_method"].type.choices) == METHODS


@pytest.mark.parametrize("values, message", [({"engine": "bogus"}, "--engine must be one of"),
                                              ({"adapt_method": "magic"}, "--adapt-method must be one of"),
                                              ({"steps": 0}, "steps must be >= 1"),
                                              ({"tile": 64, "tile_overlap": 40}, "tile overlap must be in"),
                                              ({"no_adapt": True, "require_adaptation": True}, "contradict")])
def test_an_app_building_options_directly_gets_the_commands_checks(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PipelineOptions(**values)


def test_the_adaptation_settings_requested_follow_the_fields() -> None:
    options = PipelineOptions(steps=3, lr=0.01, no_guard=True, strength=0.5, patches_per_image=4)
    assert options.requested() == {"steps": 3, "lr": 0.01, "optimizer": None, "guard": False, "objective": None,
                                   "strength": 0.5, "texture_floor": None, "texture_ceiling": None,
                                   "patches_per_face": None, "patches_per_image": 4}
    assert PipelineOptions().requested()["guard"] is None  # not given: the checkpoint's, else on


@pytest.mark.parametrize("prefix", ["oracle:", "oracle-restored:"])
def test_batch_refuses_an_oracle_prior_before_writing_anything(tmp_path: Path, prefix: str) -> None:
    (tmp_path / "in").mkdir()
    gt = tmp_path / "gt.png"
    gt.write_bytes(b"")
    out = tmp_path / "out"
    result = CliRunner().invoke(batch.command, [str(tmp_path / "in"), "--out", str(out), "--prior", f"{prefix}{gt}"])
    assert result.exit_code == ConfigError.exit_code, result.output
    assert result.output.count("\n") == 1 and "not a batch" in result.output and "Traceback" not in result.output
    assert not out.exists()
