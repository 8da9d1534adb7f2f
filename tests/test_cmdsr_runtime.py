"""CMDSR end to end at run time: checkpoint → ConditionNet → θ′ → the engine (torch and
ONNX Runtime through the one ``set_weights`` path) → tiles; the CLI's --adapt-method."""

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import TINY_RRDBNET
from safetensors import safe_open
from safetensors.torch import save_file

from f2n.errors import ConfigError, WeightsError
from f2n.export.torch_engine import TorchEngine
from f2n.nets import ConditionNet, ConditionNetConfig, RRDBNet, modulated_convs, modulated_weights
from f2n.runtime import cli
from f2n.runtime.cmdsr import CmdsrAdaptation
from f2n.runtime.images import read_image, write_image
from f2n.runtime.pipeline import AdaptAndRun, PipelineConfig
from f2n.runtime.psnr import psnr
from f2n.runtime.support import SupportConfig, sample_support
from f2n.weights import load_sr_network, save_f2n_checkpoint

SUPPORT = SupportConfig(patch=16, count=4)
FAST = ["--tile", "32", "--tile-overlap", "8", "--support-patch", "16", "--support-count", "4", "--no-progress"]


def cmdsr_parts() -> tuple[RRDBNet, ConditionNet]:
    torch.manual_seed(0)
    model = RRDBNet(**TINY_RRDBNET)
    # The trunk of a random tiny net barely shows in its output: modulate the tail too.
    config = ConditionNetConfig(num_feat=8, num_layers=2, modulate=("body.", "conv_hr", "conv_last"))
    condition_net = ConditionNet(modulated_convs(model, config.modulate), config)
    with torch.no_grad():  # a "trained" head: θ′ differs from θ
        condition_net.head.weight.normal_(0, 2.0)
        condition_net.head.bias.normal_(0, 0.5)
    return model, condition_net


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cmdsr")
    model, condition_net = cmdsr_parts()
    config = {**asdict(condition_net.config), "modulate": list(condition_net.config.modulate)}
    cmdsr = save_f2n_checkpoint(folder / "cmdsr.safetensors", model.state_dict(), None, {"train_step": 5},
                                condition_state=condition_net.state_dict(), condition_config=config)
    plain = folder / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(plain))
    return {"cmdsr": cmdsr, "plain": plain}


def textured_photo(height: int = 40, width: int = 52) -> np.ndarray:
    """No faces: smooth colour gradients plus noise."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    base = np.stack([yy, xx, 0.5 * (yy + xx)], axis=2)
    return np.clip(base + rng.normal(0, 0.08, base.shape), 0, 1).astype(np.float32)


def test_checkpoint_round_trips_the_condition_net_and_older_ones_have_none(checkpoints: dict[str, Path]) -> None:
    _, condition_net = cmdsr_parts()
    loaded = load_sr_network(checkpoints["cmdsr"])
    assert loaded.condition_net is not None and loaded.condition_net.config == condition_net.config
    for name, value in condition_net.state_dict().items():
        assert torch.equal(loaded.condition_net.state_dict()[name], value)
    assert load_sr_network(checkpoints["plain"]).condition_net is None


def test_condition_weights_without_their_config_are_refused(tmp_path: Path) -> None:
    model, condition_net = cmdsr_parts()
    with pytest.raises(WeightsError, match="both its weights and its config"):
        save_f2n_checkpoint(tmp_path / "half.safetensors", model.state_dict(), condition_state=condition_net.state_dict())
    bad = save_f2n_checkpoint(tmp_path / "bad.safetensors", model.state_dict(), condition_state=condition_net.state_dict(),
                              condition_config={"num_feat": 8, "num_layers": 2, "modulate": ["conv_last"]})
    with pytest.raises(WeightsError, match="ConditionNet weights"):  # head sized for other convs
        load_sr_network(bad)


def pipeline_with(engine_name: str, checkpoint: Path, **config: object) -> AdaptAndRun:
    loaded = load_sr_network(checkpoint)
    if engine_name == "torch":
        engine = TorchEngine(loaded.model)
    else:
        from f2n.export.engines import make_engine

        engine = make_engine(engine_name, loaded, device="cpu", precision="fp32", tile=32)
    return AdaptAndRun(model=loaded.model, engine=engine, method=CmdsrAdaptation(loaded.condition_net, SUPPORT),
                       config=PipelineConfig(tile=32, overlap=8, **config))


def test_a_photo_without_faces_is_adapted_and_onnx_runtime_gets_the_same_theta_prime(checkpoints: dict[str, Path],
                                                                                      tmp_path: Path) -> None:
    photo = textured_photo()
    torch_run = pipeline_with("torch", checkpoints["cmdsr"])
    adapted = torch_run.enhance(photo)
    assert adapted.adaptation is not None and adapted.method == "cmdsr" and adapted.reason == ""
    # θ′ is what modulated_weights gives for the pipeline's own seeded support set.
    expected = modulated_weights(torch_run.model, torch_run.method.condition_net, sample_support(photo, SUPPORT, seed=0))
    for name, value in adapted.adaptation.weights.items():
        torch.testing.assert_close(value, expected[name].detach())
    base = pipeline_with("torch", checkpoints["cmdsr"], adapt_enabled=False).enhance(photo)
    change = np.abs(adapted.rgb - base.rgb).max()
    assert change > 1e-3  # θ′ really changed the picture

    onnx = pipeline_with("onnx", checkpoints["cmdsr"]).enhance(photo)
    assert onnx.method == "cmdsr"
    # One export path: ORT took θ′ through set_weights (not the base weights it was built with).
    assert psnr(onnx.rgb, adapted.rgb) >= 45 and np.abs(onnx.rgb - adapted.rgb).max() < 0.01 * change

    source, output = tmp_path / "photo.png", tmp_path / "out.png"
    write_image(source, photo)
    report = torch_run(source, output)
    assert report.adapted and report.method == "cmdsr" and report.settings["method"] == "cmdsr"
    assert {"adapt", "adapt.support", "adapt.modulate"} <= set(report.timings)


def invoke(*args: object) -> "CliRunner.invoke":
    return CliRunner().invoke(cli.command, [str(a) for a in args], catch_exceptions=False)


def test_cli_follows_the_checkpoint_and_saves_theta_prime(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    photo = tmp_path / "building.png"
    write_image(photo, textured_photo())
    out, weights, report = tmp_path / "out.png", tmp_path / "theta.safetensors", tmp_path / "report.json"
    result = invoke(photo, "--out", out, "--checkpoint", checkpoints["cmdsr"], "--save-weights", weights,
                    "--report", report, *FAST)
    assert result.exit_code == 0, result.output
    assert "(adapted with cmdsr;" in result.output
    assert read_image(out).rgb.shape == (160, 208, 3)
    entry = json.loads(report.read_text())["photos"][0]
    assert entry["adapted"] and entry["method"] == "cmdsr" and entry["settings"]["support"]["count"] == 4

    saved = load_sr_network(weights).model.state_dict()
    base = load_sr_network(checkpoints["cmdsr"]).model.state_dict()
    changed = {name for name in base if not torch.equal(saved[name], base[name])}
    assert changed == {name for name, _ in load_sr_network(checkpoints["cmdsr"]).condition_net.convs}  # θ′
    with safe_open(str(weights), framework="pt") as handle:
        assert handle.metadata()["method"] == "cmdsr"


@pytest.mark.parametrize("args,message", [
    (["--adapt-method", "cmdsr"], "needs a checkpoint with ConditionNet weights"),
    (["--support-count", "0"], "support set size must be >= 1"),
])
def test_cli_errors_are_one_line(checkpoints: dict[str, Path], tmp_path: Path, args: list[str], message: str) -> None:
    photo = tmp_path / "photo.png"
    write_image(photo, textured_photo())
    result = invoke(photo, "--out", tmp_path / "out.png", "--checkpoint", checkpoints["plain"], *args)
    assert result.exit_code == ConfigError.exit_code
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
