"""Issue 28: the released Real-ESRGAN x4plus discriminator as a texture critic and VGG-19's
perceptual term in the inner loop, through the weight registry. Random-weight networks are
written into the test's $F2N_HOME under the registry's file names, so the runtime reads them the
way it reads the released files; the released files themselves are tested only where present."""

import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn
from torch.func import functional_call

from f2n import inner_loop
from f2n.errors import ConfigError, WeightsError
from f2n.nets.discriminator import UNetDiscriminatorSN
from f2n.nets.rrdbnet import RRDBNet
from f2n.runtime.adapt import OBJECTIVES, AdaptConfig, adapt, objective_settings
from f2n.runtime.loss_networks import LossNetworks, load_loss_networks
from f2n.runtime.types import PatchBatch
from f2n.weights import f2n_home
from f2n.weights.checkpoint import load_state_dict_file
from f2n.weights.discriminator import load_discriminator
from f2n.weights.registry import find_spec

REAL_HOME = f2n_home()  # read at import, before the autouse fixture points $F2N_HOME at a temp folder
NETD, VGG = find_spec("realesrgan-x4plus-netd"), find_spec("vgg19")
# Real-ESRGAN's options/finetune_realesrgan_x4plus.yml, perceptual_opt.layer_weights (before relu)
FINETUNE_LAYERS = {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}
MEAN, STD = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def random_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A random VGG-19 (torchvision's keys and shapes; the classifier zero, as no loss reads it) and a
    random U-Net discriminator whose spectral-norm vectors have had power iterations, saved as the
    released files are (the netD under ``params``)."""
    import torchvision

    folder = tmp_path_factory.mktemp("random_loss_networks")
    g = torch.Generator().manual_seed(0)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in torchvision.models.vgg19().state_dict().items()}
    vgg = {}
    for key, shape in shapes.items():
        if key.startswith("features.") and key.endswith(".weight"):  # He init on the fan-in: features stay O(1)
            vgg[key] = torch.randn(shape, generator=g) * math.sqrt(2.0 / (shape[1] * shape[2] * shape[3]))
        elif key.startswith("features."):
            vgg[key] = torch.randn(shape, generator=g) * 0.1
        else:
            vgg[key] = torch.zeros(shape)
    torch.save(vgg, folder / VGG.filename)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        disc = UNetDiscriminatorSN(num_feat=8)
        with torch.no_grad():
            for _ in range(3):  # train mode: power iteration moves u and v off their random start
                disc(torch.rand(1, 3, 32, 32))
    torch.save({"params": disc.state_dict()}, folder / NETD.filename)
    return {"vgg19": folder / VGG.filename, "netd": folder / NETD.filename}


def install(files: dict[str, Path], *names: str) -> None:
    """Hard-link the random files into this test's $F2N_HOME under the registry's names."""
    for name in names:
        destination = f2n_home() / files[name].name
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.link(files[name], destination)


@pytest.fixture(scope="module")
def networks(random_files, tmp_path_factory: pytest.TempPathFactory) -> LossNetworks:
    """Both networks loaded once through the registry (reading 550 MB of VGG-19 takes seconds)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("F2N_HOME", str(tmp_path_factory.mktemp("f2n_home_random")))
        install(random_files, "vgg19", "netd")
        return load_loss_networks(critic=True, perceptual=True)


@pytest.fixture(scope="module")
def reference_vgg(random_files) -> nn.Sequential:
    return torchvision_features(random_files["vgg19"])


def torchvision_features(path: Path) -> nn.Sequential:
    """torchvision's own VGG-19 with the file's weights, loaded by torchvision's module."""
    import torchvision

    with torch.device("meta"):
        vgg = torchvision.models.vgg19()
    vgg.load_state_dict(torch.load(path, weights_only=True, mmap=True), assign=True)
    return vgg.features.eval()


def images(seed: int, count: int = 2, size: int = 64) -> torch.Tensor:
    return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(seed))


def reference_perceptual(features: nn.Sequential, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Real-ESRGAN's perceptual loss on torchvision's VGG-19 ``features``: the features of the last
    conv of each block (the conv two modules before each max-pool), before their ReLU."""
    layers = list(features)
    picks = [i - 2 for i, layer in enumerate(layers) if isinstance(layer, nn.MaxPool2d)]
    assert all(isinstance(layers[i], nn.Conv2d) for i in picks) and len(picks) == 5

    def features(image: torch.Tensor) -> list[torch.Tensor]:
        out, h = [], (image - MEAN) / STD
        for index, layer in enumerate(layers[: picks[-1] + 1]):
            h = layer(h)
            if index in picks:
                out.append(h.clone())
        return out

    with torch.no_grad():
        return sum(w * (a - b).abs().mean() for w, a, b in zip(FINETUNE_LAYERS.values(), features(x), features(y)))


def reference_critic(netd_file: Path, *outputs: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits(D(x), 1) averaged over all logits, D as the training code loads it."""
    disc = load_discriminator(load_state_dict_file(netd_file), netd_file)  # eval mode, spectral norm hooks
    with torch.no_grad():
        logits = torch.cat([disc(x).flatten() for x in outputs])
    return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))


def test_the_perceptual_term_is_real_esrgans_on_torchvisions_vgg19(networks, reference_vgg) -> None:
    assert not any(p.requires_grad for p in networks.perceptual.parameters())
    x, y = images(0), images(1)
    got = networks.perceptual_loss(x, y)
    torch.testing.assert_close(got, reference_perceptual(reference_vgg, x, y), rtol=1e-5, atol=1e-6)
    assert float(networks.perceptual_loss(x, x)) == 0.0


def test_the_perceptual_term_matches_basicsrs_perceptual_loss(networks, random_files, monkeypatch, tmp_path) -> None:
    """Against basicsr's PerceptualLoss configured as Real-ESRGAN's fine-tuning configures it, on the
    same random VGG-19 (basicsr reads it from its own relative path). basicsr imports a module that
    torchvision 0.17 removed: the test aliases it to its successor for the import."""
    import torchvision.transforms.functional as functional

    monkeypatch.setitem(sys.modules, "torchvision.transforms.functional_tensor", functional)
    try:
        from basicsr.losses.basic_loss import PerceptualLoss
    except Exception as error:  # noqa: BLE001 - any failure to import the reference is a reason to skip
        pytest.skip(f"basicsr does not import here ({type(error).__name__}: {error})")
    pretrained = tmp_path / "experiments" / "pretrained_models"
    pretrained.mkdir(parents=True)
    os.link(random_files["vgg19"], pretrained / "vgg19-dcbb9e9d.pth")  # basicsr's VGG_PRETRAIN_PATH
    monkeypatch.chdir(tmp_path)
    with pytest.warns(UserWarning, match="pretrained"):  # basicsr still passes torchvision's old argument
        reference = PerceptualLoss(FINETUNE_LAYERS, vgg_type="vgg19", use_input_norm=True, range_norm=False,
                                   perceptual_weight=1.0, style_weight=0.0, criterion="l1")
    x, y = images(2), images(3)
    with torch.no_grad():
        expected, style = reference(x, y)
    assert style is None
    torch.testing.assert_close(networks.perceptual_loss(x, y), expected, rtol=1e-5, atol=1e-6)


def test_the_critic_term_is_the_generators_vanilla_gan_loss_under_d(random_files) -> None:
    install(random_files, "netd")
    networks = load_loss_networks(critic=True)
    assert networks.perceptual is None and not any(p.requires_grad for p in networks.critic.parameters())
    faces, rest = images(4, 3), images(5, 2)
    torch.testing.assert_close(networks.critic_loss(faces), reference_critic(random_files["netd"], faces))
    torch.testing.assert_close(networks.critic_loss(faces, rest), reference_critic(random_files["netd"], faces, rest))
    wider = images(6, 1, 68)  # not a multiple of 8: D sees the largest part that is
    cropped = reference_critic(random_files["netd"], wider[..., :64, :64])
    torch.testing.assert_close(networks.critic_loss(wider), cropped)


def tiny_net(seed: int = 0) -> RRDBNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return RRDBNet(num_block=1, num_feat=8, num_grow_ch=4)


def face_pairs(seed: int = 7, count: int = 4) -> PatchBatch:
    g = torch.Generator().manual_seed(seed)
    lq = torch.rand(count, 3, 16, 16, generator=g)
    return PatchBatch(lq, torch.rand(count, 3, 64, 64, generator=g), torch.rand(count, 1, 64, 64, generator=g))


def test_the_terms_enter_the_inner_loss_and_reach_theta(networks, random_files, reference_vgg) -> None:
    """The first step's loss is the fidelity term plus the weighted terms, each computed here by
    its reference; the adapted weights move differently with each term and repeat exactly."""
    model, pairs = tiny_net(), face_pairs()
    context = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(8))
    base = AdaptConfig(steps=2, lr=1e-2, holdout=0.0, guard=False, **objective_settings("lowband"))
    both = AdaptConfig(steps=2, lr=1e-2, holdout=0.0, guard=False, **objective_settings("lowband+perceptual+critic"))
    plain = adapt(model, pairs, base, context=context)
    judged = adapt(model, pairs, both, context=context, loss_networks=networks)
    with torch.no_grad():
        out, rest = model(pairs.lq), model(context)
    fidelity = float(inner_loop.lowband_masked_l1(out, pairs.target, pairs.weight, 2.0))
    expected = (fidelity + 1.0 * float(reference_perceptual(reference_vgg, out, pairs.target))
                + 0.1 * float(reference_critic(random_files["netd"], out, rest)))
    assert plain.losses[0] == pytest.approx(fidelity, rel=1e-5)
    assert judged.losses[0] == pytest.approx(expected, rel=1e-5)
    key = "conv_last.bias"  # biases adapt by default
    assert not torch.equal(judged.weights[key], plain.weights[key])  # the terms' gradients reached θ
    again = adapt(model, pairs, both, context=context, loss_networks=networks)
    assert all(torch.equal(again.weights[k], judged.weights[k]) for k in judged.weights)
    assert all(p.grad is None for p in (*networks.critic.parameters(), *networks.perceptual.parameters()))
    for name in ("lowband+critic", "lowband+perceptual"):  # each term alone moves θ′ too
        one = adapt(model, pairs, AdaptConfig(steps=2, lr=1e-2, holdout=0.0, guard=False, **objective_settings(name)),
                    context=context, loss_networks=networks)
        assert not torch.equal(one.weights[key], plain.weights[key]), name
    with torch.no_grad():  # what every engine gets: plain weights of the same network
        assert torch.isfinite(functional_call(model, judged.weights, (pairs.lq,))).all()


def test_the_compiled_step_gives_the_same_weights(networks, monkeypatch) -> None:
    """On CUDA the step goes through torch.func and Dynamo with the loss networks captured; here
    with Dynamo's eager backend (no Inductor on this CPU), so only the tracing and gradients differ."""
    import importlib

    monkeypatch.setattr(importlib.import_module("f2n.runtime.adapt"), "COMPILE_BACKEND", "eager")
    model, pairs = tiny_net(), face_pairs()
    context = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(8))
    # one SGD step: the gradients themselves compared (later steps amplify float rounding)
    config = AdaptConfig(steps=1, lr=0.1, optimizer="sgd", holdout=0.0, guard=False,
                         **objective_settings("lowband+perceptual+critic"))
    eager = adapt(model, pairs, config, context=context, loss_networks=networks)
    compiled = adapt(model, pairs, AdaptConfig(**{**config.__dict__, "compile": True}), context=context,
                     loss_networks=networks)
    np.testing.assert_allclose(compiled.losses, eager.losses, rtol=1e-5)
    for name in eager.weights:
        torch.testing.assert_close(compiled.weights[name], eager.weights[name], atol=1e-6, rtol=1e-5)


def test_an_objective_with_a_term_needs_its_network() -> None:
    config = AdaptConfig(steps=1, holdout=0.0, **objective_settings("lowband+critic"))
    with pytest.raises(ConfigError, match="critic term .* needs its network"):
        adapt(tiny_net(), face_pairs(), config)
    with pytest.raises(ConfigError, match="perceptual term"):
        adapt(tiny_net(), face_pairs(), AdaptConfig(steps=1, perceptual=1.0), loss_networks=LossNetworks())
    with pytest.raises(ConfigError, match="critic and perceptual"):
        AdaptConfig(critic=-0.1)
    assert {OBJECTIVES[name].get("critic") for name in ("lowband+critic", "lowband+perceptual+critic")} == {0.1}
    assert AdaptConfig(**objective_settings("lowband+perceptual+critic")).objective == (
        "low-band L1 σ=2 + 1·perceptual vgg19 + 0.1·critic realesrgan-x4plus-netd")


def test_missing_weights_name_the_registry_entry(monkeypatch) -> None:
    monkeypatch.setenv("F2N_OFFLINE", "1")
    for kwargs, name in (({"critic": True}, "realesrgan-x4plus-netd"), ({"perceptual": True}, "vgg19")):
        with pytest.raises(WeightsError) as caught:
            load_loss_networks(**kwargs)
        message = str(caught.value)
        assert "\n" not in message and f"f2n-models fetch {name}" in message and f"f2n-models add {name}" in message


def cli_args(tmp_path: Path, tiny_weights: Path, objective: str) -> list[str]:
    from f2n.eval.demo import demo_pair
    from f2n.runtime import write_image

    gt, lq = demo_pair((0, 512, 0, 512))  # the whole astronaut: room beside the face for non-face patches
    write_image(tmp_path / "gt.png", gt)
    write_image(tmp_path / "photo.png", lq)
    return [str(tmp_path / "photo.png"), "--out", str(tmp_path / "sr.png"), "--checkpoint", str(tiny_weights),
            "--prior", f"oracle:{tmp_path / 'gt.png'}", "--objective", objective, "--report", str(tmp_path / "r.json"),
            "--steps", "2", "--patches-per-image", "4", "--tile", "64", "--tile-overlap", "16", "--engine", "torch",
            "--no-progress"]


def test_the_cli_without_the_weights_is_one_line(tiny_weights, tmp_path, monkeypatch) -> None:
    from f2n.runtime import cli

    monkeypatch.setenv("F2N_OFFLINE", "1")
    result = CliRunner().invoke(cli.command, cli_args(tmp_path, tiny_weights, "lowband+critic"))
    assert result.exit_code == 3, result.output  # WeightsError's code
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert "realesrgan-x4plus-netd" in lines[0] and "f2n-models fetch realesrgan-x4plus-netd" in lines[0]
    assert not (tmp_path / "sr.png").exists()
    unadapted = CliRunner().invoke(cli.command, [*cli_args(tmp_path, tiny_weights, "lowband+critic"), "--no-adapt"])
    assert unadapted.exit_code == 0, unadapted.output  # no inner loop, no critic to load


def test_the_cli_with_the_weights_adapts_and_reports_the_objective(random_files, tiny_weights, tmp_path) -> None:
    import json

    from f2n.runtime import cli

    install(random_files, "netd", "vgg19")
    result = CliRunner().invoke(cli.command, cli_args(tmp_path, tiny_weights, "lowband+perceptual+critic"))
    assert result.exit_code == 0, result.output
    photo = json.loads((tmp_path / "r.json").read_text())["photos"][0]
    figures = photo["adaptation"]
    assert figures["objective"] == "low-band L1 σ=2 + 1·perceptual vgg19 + 0.1·critic realesrgan-x4plus-netd"
    assert int(figures["nonface_patches"]) > 0 and int(figures["steps_taken"]) >= 1  # the critic saw the rest too
    assert (tmp_path / "sr.png").is_file()


def released(spec_name: str) -> Path:
    path = REAL_HOME / find_spec(spec_name).filename
    if not path.is_file():
        pytest.skip(f"the released {spec_name} is not in {REAL_HOME} (no download from here): "
                    f"'f2n-models fetch {spec_name}' gets it; the terms were tested on random weights only")
    return path


def test_the_released_discriminator_loads_as_a_frozen_critic(monkeypatch) -> None:
    path = released("realesrgan-x4plus-netd")
    monkeypatch.setenv("F2N_HOME", str(REAL_HOME))
    networks = load_loss_networks(critic=True)
    photo = images(9, 1, 128)
    assert not any(p.requires_grad for p in networks.critic.parameters())
    assert torch.isfinite(networks.critic_loss(photo))
    torch.testing.assert_close(networks.critic_loss(photo), reference_critic(path, photo))


def test_the_released_vgg19_loads_as_the_perceptual_term(monkeypatch) -> None:
    path = released("vgg19")
    monkeypatch.setenv("F2N_HOME", str(REAL_HOME))
    x, y = images(10), images(11)
    got = load_loss_networks(perceptual=True).perceptual_loss(x, y)
    torch.testing.assert_close(got, reference_perceptual(torchvision_features(path), x, y), rtol=1e-5, atol=1e-6)
    assert float(got) > 0 and np.isfinite(float(got))
