"""The MMRB face restorer (paper 003): the block, the restorer, its GPEN initialisation,
GPEN's discriminator against the official code, FreezeD, training and resuming, the prior slot."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import assert_same_train_state
from safetensors.torch import load_file, save_file

from f2n.errors import WeightsError
from f2n.nets.gpen import GPEN
from f2n.nets.gpen_discriminator import GPENDiscriminator
from f2n.nets.mmrb import MMRB, MMRBRestorer
from f2n.training.checkpoint import load_checkpoint
from f2n.training.distributed import DistContext
from f2n.training.face_losses import component_boxes
from f2n.training.mmrb import (
    MmrbConfig,
    MmrbLosses,
    build_nets,
    build_optimizers,
    train_mmrb,
    train_step,
    training_pairs,
)
from f2n.weights import load_network, load_state_dict_file
from f2n.weights.mmrb import init_from_gpen, save_mmrb_restorer

FIXTURES = Path(__file__).parent / "fixtures"
TINY = {"size": 64, "style_dim": 32, "n_mlp": 2, "channel_multiplier": 1, "narrow": 0.0625}


def tiny_config(faces: Path, out: Path, steps: int, **overrides: object) -> MmrbConfig:
    settings = {"batch_size": 2, "size": 64, "narrow": 0.0625, "channel_multiplier": 1, "style_dim": 32, "n_mlp": 2,
                "local_size": 16, "local_narrow": 0.0625, "checkpoint_every": 1, "log_every": 1,
                "losses": MmrbLosses(feature_matching=0.0, identity=0.0), **overrides}
    return MmrbConfig(faces_dir=faces, out_dir=out, steps=steps, **settings)


def test_mmrb_is_the_identity_with_a_zero_fusion_and_mixes_both_paths_otherwise() -> None:
    torch.manual_seed(0)
    block, x = MMRB(8), torch.randn(2, 8, 12, 12)
    assert torch.equal(block(x), x)
    torch.nn.init.normal_(block.fuse[0].weight)
    out = block(x)
    assert out.shape == x.shape and not torch.allclose(out, x)
    # Each output channel depends on both input halves (the cross-concatenation).
    changed_second_half = x.clone()
    changed_second_half[:, 4:] += 1.0
    assert not torch.allclose(block(changed_second_half)[:, :4], out[:, :4])
    with pytest.raises(ValueError, match="odd channel count"):
        MMRB(7)


def test_restorer_restores_at_its_size_with_a_reconstruction_per_scale() -> None:
    restorer = MMRBRestorer(**TINY, decoder_blocks=1)
    restored, reconstructions = restorer.restore(torch.randn(2, 3, 64, 64))
    assert restored.shape == (2, 3, 64, 64)
    assert [r.shape[-1] for r in reconstructions] == [4, 8, 16, 32, 64]
    # The encoder has one MMRB more per scale than the decoder.
    assert sum(isinstance(m, MMRB) for m in restorer.ecd0) == 2 and len(restorer.decoder[-1]) == 1


def test_gpen_initialisation_takes_every_gpen_tensor_and_reports_the_codec_as_its_own() -> None:
    torch.manual_seed(1)
    gpen_state = {k: torch.randn_like(v) for k, v in GPEN(size=64, style_dim=32, n_mlp=2, channel_multiplier=1,
                                                          narrow=0.0625).state_dict().items()}
    restorer = MMRBRestorer(**TINY)
    codec_before = {k: v.clone() for k, v in restorer.state_dict().items() if k not in gpen_state}
    report = init_from_gpen(restorer, gpen_state)
    after = restorer.state_dict()
    assert set(report.loaded) == set(gpen_state) and not report.shape_mismatch
    assert all(torch.equal(after[name], gpen_state[name]) for name in report.loaded)
    assert set(report.not_in_gpen) == set(codec_before)
    assert any(".path3." in name for name in report.not_in_gpen)  # the MMRBs are the codec's own
    assert all(torch.equal(after[name], value) for name, value in codec_before.items())


def test_gpen_initialisation_refuses_a_file_that_is_not_gpen() -> None:
    with pytest.raises(WeightsError, match="share no tensor"):
        init_from_gpen(MMRBRestorer(**TINY), {"conv_first.weight": torch.zeros(64, 3, 3, 3)})


def test_gpen_discriminator_equals_the_official_code() -> None:
    fixture = load_file(FIXTURES / "gpen_discriminator_official.safetensors")
    state = {key.removeprefix("net."): value for key, value in fixture.items() if key.startswith("net.")}
    disc = GPENDiscriminator(64, channel_multiplier=1, narrow=0.0625)
    disc.load_state_dict(state, strict=True)
    with torch.no_grad():
        out = disc(fixture["input"])
    assert out.shape == fixture["output"].shape
    assert torch.allclose(out, fixture["output"], atol=1e-5, rtol=0)


def test_freezed_keeps_the_first_five_discriminator_convs_and_trains_the_rest(shared_data: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = tiny_config(shared_data / "faces_hq", tmp_path, steps=1)
    nets = build_nets(config, log=lambda line: None)
    optimizers = build_optimizers(nets, config.rates)
    frozen = [p for layer in nets.disc.conv_layers()[:5] for p in layer.parameters()]
    trained = [p for layer in nets.disc.conv_layers()[5:] for p in layer.parameters()]
    before_frozen, before_trained = [p.clone() for p in frozen], [p.clone() for p in trained]
    lq, hq = training_pairs((min((shared_data / "faces_hq").iterdir()),), 0, DistContext(0, 1, torch.device("cpu")),
                            config, 64)
    train_step(nets, optimizers, lq, hq, component_boxes(64), config)
    assert all(p.grad is None and torch.equal(p, b) for p, b in zip(frozen, before_frozen))
    assert any(not torch.equal(p, b) for p, b in zip(trained, before_trained))
    assert all(p.requires_grad for p in trained)  # the restorer's step gave the Ds their gradients back


def test_training_resumes_to_the_same_weights_as_a_straight_run(shared_data: Path, tmp_path: Path) -> None:
    faces = shared_data / "faces_hq"
    straight = train_mmrb(tiny_config(faces, tmp_path / "a", steps=3), progress=False, log=lambda line: None)
    train_mmrb(tiny_config(faces, tmp_path / "b", steps=2), progress=False, log=lambda line: None)
    resumed = train_mmrb(tiny_config(faces, tmp_path / "b", steps=3, resume=tmp_path / "b"), progress=False,
                         log=lambda line: None)
    a, b = load_file(straight), load_file(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert_same_train_state(load_checkpoint(tmp_path / "b"), load_checkpoint(tmp_path / "a"))  # D, local Ds, Adam
    records = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3] and all(np.isfinite(r["g_total"]) for r in records)
    name, restorer = load_network(load_state_dict_file(resumed), resumed)
    assert name == "mmrb" and restorer.hyperparameters == {**TINY, "decoder_blocks": 1}


def test_loss_networks_are_required_unless_switched_off(shared_data: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("F2N_OFFLINE", "1")
    config = tiny_config(shared_data / "faces_hq", tmp_path, steps=1, losses=MmrbLosses(identity=0.0))
    with pytest.raises(WeightsError, match="--no-feature-matching"):
        build_nets(config, log=lambda line: None)


def test_train_command_refuses_missing_weights_in_one_line(shared_data: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from f2n.training.cli import main

    monkeypatch.setenv("F2N_OFFLINE", "1")
    result = CliRunner().invoke(main, ["--method", "mmrb", "--faces", str(shared_data / "faces_hq"), "--out",
                                       str(tmp_path), "--steps", "1", "--face-size", "64", "--mmrb-narrow", "0.0625",
                                       "--no-identity", "--no-progress"])
    assert result.exit_code == 3 and "--no-feature-matching" in result.output
    assert "Traceback" not in result.output


def test_a_trained_restorer_is_a_face_prior_end_to_end(tmp_path: Path) -> None:
    from f2n.nets import RRDBNet
    from f2n.runtime import cli
    from f2n.runtime.demo import demo_pair
    from f2n.runtime.face_prior import make_prior
    from f2n.runtime.images import write_image

    torch.manual_seed(0)
    restorer_path = save_mmrb_restorer(tmp_path / "mmrb.safetensors", MMRBRestorer(**TINY).eval())
    prior = make_prior(str(restorer_path))  # recognised by its keys, like every face-prior file
    faces = np.random.default_rng(0).uniform(size=(2, 64, 64, 3)).astype(np.float32)
    with torch.no_grad():
        expected = (prior.model(torch.from_numpy(faces).permute(0, 3, 1, 2) * 2 - 1) + 1) / 2
    restored = prior.restore(faces, np.zeros((2, 2, 3)))
    assert np.allclose(restored, expected.clamp(0, 1).permute(0, 2, 3, 1).numpy(), atol=1e-6)

    sr = tmp_path / "tiny_sr.safetensors"
    save_file({k: v.contiguous() for k, v in RRDBNet(num_block=1, num_feat=8, num_grow_ch=4).state_dict().items()}, str(sr))
    _, lq = demo_pair()
    write_image(tmp_path / "photo.png", lq)
    result = CliRunner().invoke(cli.command, [str(tmp_path / "photo.png"), "--out", str(tmp_path / "sr.png"),
                                              "--checkpoint", str(sr), "--prior", str(restorer_path),
                                              "--report", str(tmp_path / "r.json"), "--tile", "64", "--tile-overlap",
                                              "16", "--steps", "1", "--patches-per-face", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    photo = report["photos"][0]
    assert photo["adapted"] and photo["settings"]["prior"] == "mmrb"
