"""f2n-train --method redegnet on the shared face pairs and natural images: a short run, its
checkpoints (training state + every network in the official save layout), resuming the run folder to
the same networks and optimiser states as a straight run, the F2N-ESRGAN half of the step (θ and its D
learn, SynNet does not), runs without it, unsharp masking and the VGG terms."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import TINY_RRDBNET, assert_same_train_state

from f2n.errors import ConfigError
from f2n.training.checkpoint import load_checkpoint
from f2n.training.cli import main
from f2n.training.redegnet import ReDegTrainConfig, build_models
from f2n.training.redegnet_step import Criteria, ReDegLosses, SRLosses, sr_update
from f2n.training.sharpen import usm_sharpen
from f2n.vgg_perceptual import VGG19_CONVS, PerceptualStyle
from f2n.weights import load_network, load_sr_network, load_state_dict_file

THETA = [f"--{key.replace('_', '-')}" if i == 0 else str(value)
         for key, value in TINY_RRDBNET.items() for i in range(2)] + ["--disc-feat", "4"]
TINY = ["--redegnet-size", "32", "--redegnet-narrow", "0.0625", "--batch-size", "2", "--no-perceptual",
        "--no-progress", "--device", "cpu", "--log-every", "1", *THETA]


@pytest.fixture
def data(shared_data: Path) -> dict[str, Path]:
    folders = {"pairs": shared_data / "face_pairs_real", "natural": shared_data / "natural_hq"}
    if not all(folder.is_dir() for folder in folders.values()):
        pytest.skip("the shared face pairs / natural images are absent")
    return folders


def train(data: dict[str, Path], out: Path, *extra: str) -> "CliRunner.invoke":
    args = ["--method", "redegnet", "--face-pairs", data["pairs"], "--natural", data["natural"], "--out", out,
            *TINY, *extra]
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_a_run_saves_loadable_networks_and_resuming_its_folder_equals_a_straight_run(data: dict[str, Path],
                                                                                    tmp_path: Path) -> None:
    straight, out = tmp_path / "straight", tmp_path / "resumed"
    assert train(data, straight, "--steps", "3").exit_code == 0
    first = train(data, out, "--steps", "2")
    assert first.exit_code == 0, first.output
    files = {"net_deg": "redegnet-degnet", "net_synE": "redegnet-syn-encoder", "net_synG": "redegnet-syn-generator",
             "net_synD": "redegnet-discriminator", "net_f2n": "rrdbnet", "net_f2nD": "unet-discriminator"}
    saved = {name: load_state_dict_file(out / "checkpoints" / f"{name}_0000002.pth") for name in files}
    for file, network in files.items():
        assert load_network(saved[file], Path(file), expected=network)[0] == network
    theta = load_sr_network(out / "checkpoints" / "net_f2n_0000002.safetensors")  # as --checkpoint reads it
    assert theta.descriptor.value_range == "signed"  # trained on [-1, 1] tensors, as the official θ
    for key, value in theta.model.state_dict().items():
        assert torch.equal(value, saved["net_f2n"][key]), key

    resumed = train(data, out, "--steps", "3", "--resume", out)
    assert resumed.exit_code == 0, resumed.output
    assert f"resumed from {out} at step 2" in resumed.output
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [record["step"] for record in records] == [1, 2, 3]  # the resumed run did step 3 only
    assert {"pixel", "same_degradation", "contrastive", "adversarial", "disc", "sr_pixel", "sr_adversarial",
            "sr_disc"} <= set(records[-1])
    for name in ("net_deg", "net_f2n", "net_f2nD"):  # it went on learning
        after = load_state_dict_file(out / "checkpoints" / f"{name}_0000003.pth")
        assert any(not torch.equal(after[k], saved[name][k]) for k in after), name

    want, got = (load_checkpoint(run / "checkpoints" / "step_0000003.train.safetensors") for run in (straight, out))
    assert set(want.modules) == {"degnet", "encoder", "generator", "disc", "sr", "sr_disc"}
    assert_same_train_state(got, want)
    assert float(want.optimizers["sr"]["state"][0]["step"]) == 3  # θ's Adam took every step

    again = train(data, out, "--steps", "3", "--resume", out / "checkpoints" / "step_0000003.train.safetensors")
    assert again.exit_code == ConfigError.exit_code and "nothing to do" in again.output


def test_without_the_sr_half_no_theta_is_trained_and_its_run_resumes_only_so(data: dict[str, Path],
                                                                               tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = train(data, out, "--steps", "1", "--no-redegnet-sr")
    assert result.exit_code == 0, result.output
    assert sorted(p.name.split("_0")[0] for p in (out / "checkpoints").glob("*.pth")) == [
        "net_deg", "net_synD", "net_synE", "net_synG"]
    record = json.loads((out / "log.jsonl").read_text())
    assert "pixel" in record and not any(key.startswith("sr_") for key in record)

    with_sr = train(data, out, "--steps", "2", "--resume", out)
    assert with_sr.exit_code == ConfigError.exit_code
    assert "Traceback" not in with_sr.output
    assert with_sr.output.strip().splitlines()[-1].startswith("error: resume checkpoint")
    assert "this run trains" in with_sr.output


def test_a_resume_folder_without_a_checkpoint_is_one_line(data: dict[str, Path], tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = train(data, tmp_path / "run", "--steps", "1", "--resume", empty)
    assert result.exit_code == ConfigError.exit_code
    assert result.output.strip().splitlines()[-1] == (
        f"error: resume folder {empty} holds no training checkpoint, expected checkpoints/step_*.train.safetensors")
    assert not (tmp_path / "run").exists()


def test_the_sr_update_trains_theta_and_its_discriminator_on_synnet_renderings(data: dict[str, Path]) -> None:
    config = ReDegTrainConfig(data["pairs"], data["natural"], Path("unused"), steps=1, size=32, narrow=0.0625,
                              style_dim=32, n_mlp=2, num_block=1, num_feat=8, num_grow_ch=4, disc_feat=4)
    criteria = Criteria(ReDegLosses(perceptual=0.0), SRLosses(perceptual=0.0))
    generator = torch.Generator().manual_seed(0)
    batch = {name: torch.rand(2, 3, 32, 32, generator=generator) * 2 - 1 for name in ("sr_hq", "sr_target")}
    results = []
    for deg_seed in (1, 1, 2):
        torch.manual_seed(0)
        models = build_models(config, log=lambda _: None)
        # parameters: the spectral norms' power-iteration vectors move at each forward in train mode, as the official's
        before = {name: {k: v.detach().clone() for k, v in module.named_parameters()}
                  for name, module in models.modules().items()}
        optimizers = {name: torch.optim.Adam(module.parameters(), lr=1e-3) for name, module in models.modules().items()}
        deg = torch.randn(2, 32, generator=torch.Generator().manual_seed(deg_seed))
        record = sr_update(models, optimizers, batch, deg, criteria, "bicubic")
        assert set(record) == {"sr_pixel", "sr_adversarial", "sr_total", "sr_disc"}
        after = {name: dict(module.named_parameters()) for name, module in models.modules().items()}
        for name in ("sr", "sr_disc"):
            assert any(not torch.equal(after[name][k], before[name][k]) for k in before[name]), name
        for name in ("degnet", "encoder", "generator", "disc"):  # SynNet only renders θ's input
            assert all(torch.equal(after[name][k], before[name][k]) for k in before[name]), name
            assert all(p.grad is None for p in models.modules()[name].parameters()), name
        results.append(after["sr"]["conv_first.weight"].detach().clone())
    assert torch.equal(results[0], results[1])  # deterministic for one Ω ...
    assert not torch.equal(results[0], results[2])  # ... and θ learns from the rendering through Ω


def test_unsharp_masking_keeps_flat_areas_and_steepens_edges() -> None:
    flat = torch.full((3, 32, 32), 0.4)
    assert torch.allclose(usm_sharpen(flat, np.random.default_rng(0)), flat, atol=1e-6)
    edge = torch.full((3, 32, 64), 0.3)
    edge[..., 32:] = 0.7
    for seed in range(3):
        sharpened = usm_sharpen(edge, np.random.default_rng(seed))
        assert sharpened[..., 31].max() < 0.3 - 0.01 and sharpened[..., 32].min() > 0.7 + 0.01  # overshoot
        assert sharpened.min() >= 0 and sharpened.max() <= 1
        assert torch.allclose(sharpened[..., :1], edge[..., :1], atol=0.01)  # far from the edge: as it was


def test_missing_face_pairs_is_one_line(data: dict[str, Path], tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--method", "redegnet", "--natural", str(data["natural"]),
                                       "--out", str(tmp_path / "run"), *TINY, "--steps", "1"])
    assert result.exit_code == ConfigError.exit_code
    assert result.output.strip().splitlines() == [
        "error: --method redegnet needs --face-pairs (lq/ and pseudo_hq/) and --natural, folders of images"]


def test_perceptual_and_style_terms_read_the_vgg_features_before_their_relu() -> None:
    """BasicSR's PerceptualLoss (the official loss) takes conv outputs before ReLU; torchvision's
    ReLUs work in place, so a kept reference would silently turn into the ReLU's output. The
    reference here takes the conv outputs with forward hooks."""
    vgg = pytest.importorskip("torchvision.models.vgg")
    torch.manual_seed(0)
    features = vgg.make_layers(vgg.cfgs["E"]).eval().requires_grad_(False)  # vgg19's features, random
    layers = {"conv1_2": 0.5, "conv3_4": 2.0}
    x, y = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1

    captured: list[torch.Tensor] = []
    hooks = [features[index].register_forward_hook(lambda _m, _i, out: captured.append(out.clone()))
             for index in (VGG19_CONVS[name] for name in layers)]
    perceptual, style = PerceptualStyle(features, layers)(x, y)
    for hook in hooks:
        hook.remove()
    got, wanted = captured[:2], captured[2:]
    assert all(bool((feature < 0).any()) for feature in got)  # before ReLU

    def gram(f: torch.Tensor) -> torch.Tensor:
        flat = f.flatten(2)
        return flat @ flat.transpose(1, 2) / flat[0].numel()

    weights = list(layers.values())
    torch.testing.assert_close(perceptual, sum(w * (g - t).abs().mean() for w, g, t in zip(weights, got, wanted)))
    torch.testing.assert_close(style, sum(w * (gram(g) - gram(t)).abs().mean() for w, g, t in zip(weights, got, wanted)))


def test_theta_starts_raw_from_a_signed_file_and_warns_on_a_unit_one(tmp_path: Path) -> None:
    """The step feeds [-1, 1] tensors as they are: θ built from a signed file must not map them a
    second time, and a [0, 1] start (Real-ESRGAN) is said to become signed."""
    from safetensors.torch import save_file

    from f2n.nets import RRDBNet
    from f2n.training.redegnet import ReDegTrainConfig, build_sr

    torch.manual_seed(0)
    state = {k: v.contiguous() for k, v in RRDBNet(num_block=1, num_feat=8, num_grow_ch=4).state_dict().items()}
    signed, unit = tmp_path / "signed.safetensors", tmp_path / "unit.safetensors"
    save_file(state, str(signed), metadata={"value_range": "signed"})
    save_file(state, str(unit))
    x = torch.rand(1, 3, 8, 8) * 2 - 1
    for path in (signed, unit):
        lines: list[str] = []
        config = ReDegTrainConfig(tmp_path, tmp_path, tmp_path / "run", steps=1, sr_weights=path)
        theta, _ = build_sr(config, lines.append)
        reference = RRDBNet(num_block=1, num_feat=8, num_grow_ch=4)
        reference.load_state_dict(state)
        with torch.no_grad():
            torch.testing.assert_close(theta(x), reference(x))  # no mapping inside: the raw network
        assert any("becomes a signed-range network" in line for line in lines) == (path == unit)
