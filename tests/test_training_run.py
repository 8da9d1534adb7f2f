"""A tiny meta-training run on the shared data: steps, checkpoints, resume, CLI errors."""

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import assert_same_train_state
from safetensors import safe_open

from f2n.errors import ConfigError
from f2n.nets import RRDBNet
from f2n.nets.discriminator import UNetDiscriminatorSN
from f2n.training.checkpoint import latest_checkpoint, load_checkpoint
from f2n.training.cli import main
from f2n.training.config import (
    DataConfig,
    LossConfig,
    NetConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
)
from f2n.training.models import build_disc, build_masknet, build_sr
from f2n.training.trainer import train
from f2n.weights import load_sr_network


def _config(shared_data: Path, out_dir: Path, steps: int, resume: Path | None = None) -> TrainConfig:
    return TrainConfig(
        net=NetConfig(num_block=1, num_feat=8, num_grow_ch=4, mask_feat=8, mask_layers=3, disc_feat=8),
        loss=LossConfig(lpips=0.0),  # no AlexNet weights in CI
        optim=OptimConfig(ema_decay=0.5),
        data=DataConfig(faces_dir=shared_data / "faces_hq", natural_dir=shared_data / "natural_hq",
                        tasks_per_step=2, inner_patch=32, outer_patch=64, face_size=128, face_targets="gt"),
        run=RunConfig(out_dir=out_dir, steps=steps, checkpoint_every=2, log_every=1, resume=resume),
    )


def test_tiny_run_checkpoints_and_resumes_to_the_same_weights(shared_data, tmp_path) -> None:
    straight = train(_config(shared_data, tmp_path / "a", steps=3), log=lambda _: None, progress=False)
    train(_config(shared_data, tmp_path / "b", steps=2), log=lambda _: None, progress=False)
    assert latest_checkpoint(tmp_path / "b").name == "step_0000002.safetensors"
    resumed = train(_config(shared_data, tmp_path / "b", steps=3, resume=tmp_path / "b"), log=lambda _: None, progress=False)

    a, b = load_checkpoint(straight), load_checkpoint(resumed)
    assert a.step == 3 and set(a.modules) == {"sr", "masknet", "disc", "ema"}
    assert_same_train_state(b, a)  # networks, EMA and the three Adam states
    # The weights moved: the run trained something.
    first = load_checkpoint(tmp_path / "b" / "checkpoints" / "step_0000002.safetensors")
    assert not torch.equal(first.modules["sr"]["conv_last.weight"], a.modules["sr"]["conv_last.weight"])

    # The deployable file is what f2n-adapt-and-run reads: EMA θ, MaskNet, α.
    loaded = load_sr_network(straight)
    assert loaded.adaptation_defaults.alpha == OptimConfig().alpha
    ema_last = a.modules["ema"]["module.conv_last.weight"]
    torch.testing.assert_close(loaded.model.state_dict()["conv_last.weight"], ema_last)
    assert set(loaded.masknet_state) == set(a.modules["masknet"])
    log_lines = (tmp_path / "b" / "log.jsonl").read_text().splitlines()
    assert len(log_lines) == 3 and '"l1"' in log_lines[-1]

    # another network is refused in one line; other changed settings are named where the run resumes
    config = _config(shared_data, tmp_path / "b", steps=4, resume=tmp_path / "b")
    with pytest.raises(ConfigError, match=r"other settings \(net.num_feat: 8 there, 4 here\)"):
        train(replace(config, net=replace(config.net, num_feat=4)), log=lambda _: None, progress=False)
    said: list[str] = []
    train(replace(config, optim=replace(config.optim, lr_sr=1e-5)), log=said.append, progress=False)
    assert said[-1] == f"resumed from {tmp_path / 'b'} at step 3 (changed since: optim.lr_sr)"


def test_cli_refuses_lpips_without_weights_in_one_line(shared_data, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("F2N_OFFLINE", "1")
    args = ["--faces", str(shared_data / "faces_hq"), "--natural", str(shared_data / "natural_hq"),
            "--out", str(tmp_path / "run"), "--num-block", "1", "--num-feat", "8"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 3, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("error: ") and "--no-lpips" in lines[-1]
    assert "Traceback" not in result.output
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_cli_names_a_missing_folder(tmp_path) -> None:
    result = CliRunner().invoke(main, ["--faces", str(tmp_path / "nope"), "--natural", str(tmp_path), "--no-lpips"])
    assert result.exit_code == 5
    assert "faces folder" in result.output and "does not exist" in result.output


def test_checkpoint_file_layout(shared_data, tmp_path) -> None:
    config = _config(shared_data, tmp_path / "c", steps=1)
    config = replace(config, loss=replace(config.loss, gan=0.0), optim=replace(config.optim, ema_decay=0.0))
    path = train(config, log=lambda _: None, progress=False)
    with safe_open(str(path), framework="pt") as handle:
        keys = list(handle.keys())
    # Only θ and θ_m in the deployable file; D and optimiser states stay in the train file.
    assert all(key.startswith(("sr.", "masknet.")) for key in keys)
    state = load_checkpoint(path)
    assert set(state.modules) == {"sr", "masknet"} and set(state.optimizers) == {"sr", "masknet"}
    assert state.config["data"]["inner_patch"] == 32


def test_theta_and_d_start_from_given_real_esrgan_style_files(tmp_path) -> None:
    torch.manual_seed(3)
    sr, disc = RRDBNet(num_block=2, num_feat=8, num_grow_ch=4), UNetDiscriminatorSN(num_feat=8)
    torch.save({"params_ema": sr.state_dict()}, tmp_path / "g.pth")  # Real-ESRGAN's layouts
    torch.save({"params": disc.state_dict()}, tmp_path / "d.pth")
    config = TrainConfig(run=RunConfig(sr_weights=tmp_path / "g.pth", disc_weights=tmp_path / "d.pth"))
    built_sr, built_disc = build_sr(config, lambda _: None), build_disc(config, lambda _: None)
    for source, built in ((sr, built_sr), (disc, built_disc)):
        for key, value in source.state_dict().items():
            torch.testing.assert_close(built.state_dict()[key], value, rtol=0, atol=0)
    assert all(p.requires_grad for p in built_sr.parameters()) and built_sr.training
    # A fresh MaskNet weighs every pixel 1: plain L1 until it learns otherwise.
    masknet = build_masknet(config)
    assert torch.equal(masknet(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)), torch.ones(1, 1, 8, 8))
