"""f2n-train --method cmdsr: a few steps with a tiny net write a checkpoint that
f2n-adapt-and-run loads and adapts with, and the run resumes."""

import json
from pathlib import Path

import numpy as np
import torch
from click.testing import CliRunner
from conftest import assert_same_train_state

from f2n.errors import ConfigError
from f2n.runtime import cli as run_cli
from f2n.runtime.images import write_image
from f2n.training.checkpoint import load_checkpoint
from f2n.training.cli import main as train_cli
from f2n.training.cmdsr_tasks import make_cmdsr_task, query_corners
from f2n.training.config import CmdsrConfig
from f2n.training.degradations import sample_params
from f2n.weights import load_sr_network

TINY = ["--num-block", "1", "--num-feat", "8", "--num-grow-ch", "4", "--cond-feat", "8", "--cond-layers", "2",
        "--tasks-per-step", "1", "--outer-patch", "128", "--support-patch", "16", "--support-count", "4",
        "--query-patch", "12", "--query-count", "2", "--val-tasks", "2", "--checkpoint-every", "1",
        "--lr-cond", "1e-2", "--no-progress"]


def test_task_pairs_each_lr_query_with_its_hr_patch() -> None:
    rng = np.random.default_rng(0)
    hq = torch.rand(3, 128, 128)
    config = CmdsrConfig(support_patch=16, support_count=3, query_patch=8, query_count=3)
    task = make_cmdsr_task(hq, sample_params(1), config, rng)
    assert task.support.shape == (3, 3, 16, 16)
    assert task.query_lq.shape == (3, 3, 8, 8) and task.query_hq.shape == (3, 3, 32, 32)
    # Each query's HR patch is a crop of the HQ image at 4x its LR corner.
    matches = [any(torch.equal(hq[:, y : y + 32, x : x + 32], patch) for y in range(0, 97, 4) for x in range(0, 97, 4))
               for patch in task.query_hq]
    assert all(matches)


def test_query_corners_miss_every_support_patch() -> None:
    support = np.array([[0, 0], [10, 20], [30, 5]])
    corners = query_corners((48, 48), 8, 20, support, 12, np.random.default_rng(0))
    for top, left in corners:
        assert 0 <= top <= 40 and 0 <= left <= 40
        overlap = (top < support[:, 0] + 12) & (support[:, 0] < top + 8) & (left < support[:, 1] + 12) & (support[:, 1] < left + 8)
        assert not overlap.any()


def test_train_writes_a_checkpoint_the_runtime_adapts_with_and_resumes(shared_data: Path, tmp_path: Path) -> None:
    natural, out = shared_data / "natural_hq", tmp_path / "run"
    base = ["--method", "cmdsr", "--natural", natural, "--out", out, *TINY]
    first = CliRunner().invoke(train_cli, [str(a) for a in [*base, "--steps", "2"]], catch_exceptions=False)
    assert first.exit_code == 0, first.output
    step2 = out / "checkpoints" / "step_0000002.safetensors"
    loaded = load_sr_network(step2)
    assert loaded.condition_net is not None and loaded.adaptation_defaults is None
    assert loaded.condition_net.head.weight.abs().max() > 0  # trained away from the zero start
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 2 and {"val_l1_base", "val_l1_cmdsr"} <= set(records[-1])

    photo = tmp_path / "frog.png"
    write_image(photo, np.random.default_rng(0).random((24, 28, 3), dtype=np.float32))
    result = CliRunner().invoke(run_cli.command, [str(a) for a in [
        photo, "--out", tmp_path / "frog_x4.png", "--checkpoint", step2, "--tile", "32", "--tile-overlap", "8",
        "--support-patch", "16", "--no-progress"]], catch_exceptions=False)
    assert result.exit_code == 0 and "(adapted with cmdsr;" in result.output, result.output

    resumed = CliRunner().invoke(train_cli, [str(a) for a in [*base, "--steps", "3", "--resume", out]],
                                 catch_exceptions=False)
    assert resumed.exit_code == 0, resumed.output
    assert "resumed from" in resumed.output
    step3 = load_sr_network(out / "checkpoints" / "step_0000003.safetensors")
    assert not torch.equal(step3.condition_net.head.weight, loaded.condition_net.head.weight)
    for name, value in loaded.model.state_dict().items():  # θ stays frozen without --train-sr
        assert torch.equal(step3.model.state_dict()[name], value)

    # bit-identical to 3 straight steps: θ, the ConditionNet and its Adam state
    straight = tmp_path / "straight"
    run = CliRunner().invoke(train_cli, [str(a) for a in ["--method", "cmdsr", "--natural", natural, "--out", straight,
                                                          *TINY, "--steps", "3"]], catch_exceptions=False)
    assert run.exit_code == 0, run.output
    assert_same_train_state(load_checkpoint(out), load_checkpoint(straight))


def test_metaf2n_still_needs_faces_and_cmdsr_options_are_checked(tmp_path: Path) -> None:
    (tmp_path / "n").mkdir()
    no_faces = CliRunner().invoke(train_cli, ["--natural", str(tmp_path / "n"), "--no-lpips"])
    assert no_faces.exit_code == ConfigError.exit_code and "no faces folder given" in no_faces.output
    too_big = CliRunner().invoke(train_cli, ["--method", "cmdsr", "--natural", str(tmp_path / "n"),
                                             "--outer-patch", "64", "--support-patch", "32"])
    assert too_big.exit_code == ConfigError.exit_code and "support_patch must be in [4, outer_patch/4 = 16]" in too_big.output


def test_too_few_images_for_the_held_out_set(tmp_path: Path) -> None:
    folder = tmp_path / "n"
    folder.mkdir()
    write_image(folder / "only.png", np.random.default_rng(0).random((64, 64, 3), dtype=np.float32))
    result = CliRunner().invoke(train_cli, ["--method", "cmdsr", "--natural", str(folder), "--out", str(tmp_path / "r"),
                                            "--val-images", "1", *TINY, "--steps", "1"])
    assert result.exit_code == ConfigError.exit_code and "held out for validation" in result.output
