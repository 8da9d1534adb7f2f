"""``f2n-export --format spandrel``: the file is loaded by spandrel itself (the library ComfyUI's
"Load Upscale Model" and chaiNNer call) and runs as f2n's torch engine does — on real x4plus
weights and on a θ′ from a real adaptation — and networks spandrel would run wrongly are refused."""

from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import torch
from click.testing import CliRunner
from safetensors import safe_open
from spandrel import ModelLoader

from conftest import TinyRRDBNet

from f2n.errors import ConfigError
from f2n.export.cli import main as export_main
from f2n.export.engines import make_engine
from f2n.nets.condition_net import ConditionNet, ConditionNetConfig, modulated_convs
from f2n.runtime.adapt import AdaptConfig, adapt
from f2n.runtime.pipeline import save_adapted_weights
from f2n.runtime.types import PatchBatch
from f2n.weights import load_sr_network, save_f2n_checkpoint

TOLERANCE = 1e-4  # the bound, as every fp32 export of f2n-export


def rgb_tensor(bgr: np.ndarray) -> torch.Tensor:
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].contiguous()


def photo_crop(shared_data: Path, size: int = 32) -> torch.Tensor:
    """A crop of a real old photo around its face."""
    bgr = cv2.imread(str(shared_data / "real_lq" / "Lincoln.png"), cv2.IMREAD_COLOR)
    return rgb_tensor(bgr[40 : 40 + size, 60 : 60 + size])


def export(*args: object) -> "CliRunner.invoke":
    return CliRunner().invoke(export_main, ["--format", "spandrel", *[str(a) for a in args]])


def spandrel_output(path: Path, crop: torch.Tensor) -> torch.Tensor:
    descriptor = ModelLoader().load_from_file(str(path))  # what ComfyUI's UpscaleModelLoader calls
    assert (descriptor.architecture.id, descriptor.scale) == ("ESRGAN", 4)
    with torch.inference_mode():
        return descriptor.eval()(crop)


def torch_engine_output(weights: Path, crop: torch.Tensor) -> torch.Tensor:
    engine = make_engine("torch", load_sr_network(weights), device="cpu", precision="fp32", tile=crop.shape[-1])
    return engine.run(crop).clamp(0, 1)


def face_pairs(shared_data: Path, count: int = 4) -> PatchBatch:
    """(16² LQ, 64² restored) pairs from real faces and their GPEN restorations: the LQ face
    downscaled x4, patches at the same places (eyes, nose, mouth rows)."""
    lq_faces, targets = [], []
    for name in sorted((shared_data / "face_pairs_real" / "lq").iterdir())[:count]:
        lq = cv2.imread(str(name), cv2.IMREAD_COLOR)
        hq = cv2.imread(str(shared_data / "face_pairs_real" / "pseudo_hq" / name.name), cv2.IMREAD_COLOR)
        small = cv2.resize(lq, (128, 128), interpolation=cv2.INTER_AREA)
        lq_faces.append(rgb_tensor(small[56:72, 48:64]))
        targets.append(rgb_tensor(hq[224:288, 192:256]))
    target = torch.cat(targets)
    return PatchBatch(torch.cat(lq_faces), target, torch.ones_like(target[:, :1]))


def test_real_x4plus_exports_loads_in_spandrel_and_matches_the_torch_engine(
        real_sr_weights: Path, shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "x4plus.safetensors"
    result = export("--weights", real_sr_weights, "--out", out)
    assert result.exit_code == 0, result.output
    assert "spandrel vs PyTorch" in result.output
    crop = photo_crop(shared_data)
    assert float((spandrel_output(out, crop) - torch_engine_output(real_sr_weights, crop)).abs().max()) <= TOLERANCE


def test_a_theta_prime_from_a_real_adaptation_runs_in_spandrel_as_in_f2n(
        real_sr_weights: Path, shared_data: Path, tmp_path: Path) -> None:
    loaded = load_sr_network(real_sr_weights)
    config = AdaptConfig(steps=2, lr=1e-3, optimizer="adam", params="bias", holdout=0, guard=False)
    adaptation = adapt(loaded.model, face_pairs(shared_data), config)
    theta = save_adapted_weights(tmp_path / "theta.safetensors", adaptation, tmp_path / "photo.png",
                                 {"method": "faces"}, "unit")
    out = tmp_path / "theta-spandrel.safetensors"
    assert export("--weights", theta, "--out", out, "--no-verify").exit_code == 0  # checked here instead
    crop = photo_crop(shared_data)
    got = spandrel_output(out, crop)
    assert float((got - torch_engine_output(theta, crop)).abs().max()) <= TOLERANCE
    # θ′ is not θ: the file carries the adaptation, not the base weights
    assert float((got - torch_engine_output(real_sr_weights, crop)).abs().max()) > 10 * TOLERANCE


def test_an_f2n_checkpoint_loses_its_prefixes_and_masknet(tiny_rrdbnet: TinyRRDBNet, tmp_path: Path) -> None:
    net = tiny_rrdbnet(3, num_grow_ch=32).eval()  # spandrel's ESRGAN has 32 growth channels
    masknet = {"body.0.weight": torch.zeros(4, 6, 3, 3), "body.0.bias": torch.zeros(4)}
    checkpoint = save_f2n_checkpoint(tmp_path / "step_0000010.safetensors", net.state_dict(), masknet,
                                     {"alpha": 0.01, "steps": 1, "optimizer": "sgd"})
    out = tmp_path / "ckpt-spandrel.safetensors"
    result = export("--weights", checkpoint, "--out", out)
    assert result.exit_code == 0, result.output
    with safe_open(str(out), "pt") as f:
        assert set(f.keys()) == set(net.state_dict())
    crop = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert float((spandrel_output(out, crop) - net(crop).clamp(0, 1)).abs().max()) <= TOLERANCE


def refused(result: "CliRunner.invoke", out: Path, words: str) -> None:
    lines = result.output.strip().splitlines()
    assert result.exit_code == ConfigError.exit_code, result.output
    assert len(lines) == 1 and words in lines[0], result.output
    assert not out.exists() and not list(out.parent.glob(f".{out.name}*"))


def test_a_signed_range_theta_is_refused_in_one_line(tiny_rrdbnet: TinyRRDBNet, tmp_path: Path) -> None:
    net = tiny_rrdbnet(0, num_grow_ch=32)
    signed = save_f2n_checkpoint(tmp_path / "signed.safetensors", net.state_dict(), meta={"value_range": "signed"})
    out = tmp_path / "signed-spandrel.safetensors"
    refused(export("--weights", signed, "--out", out), out, "trained in [-1, 1]")


def test_a_cmdsr_checkpoint_is_refused_in_one_line(tiny_rrdbnet: TinyRRDBNet, tmp_path: Path) -> None:
    net = tiny_rrdbnet(0, num_grow_ch=32)
    condition = ConditionNet(modulated_convs(net), ConditionNetConfig(num_feat=8, num_layers=1))
    config = {**asdict(condition.config), "modulate": list(condition.config.modulate)}
    cmdsr = save_f2n_checkpoint(tmp_path / "cmdsr.safetensors", net.state_dict(), None, {},
                                condition_state=condition.state_dict(), condition_config=config)
    out = tmp_path / "cmdsr-spandrel.safetensors"
    refused(export("--weights", cmdsr, "--out", out), out, "ConditionNet")


def test_growth_channels_spandrel_lacks_and_low_precision_are_refused(
        tiny_weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiny-spandrel.safetensors"
    refused(export("--weights", tiny_weights, "--out", out), out, "growth channels")
    refused(export("--weights", tiny_weights, "--out", out, "--precision", "fp16"), out, "fp32")
