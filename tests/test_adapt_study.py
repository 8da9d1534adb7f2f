"""Issue 16: low-rank deltas folded into θ′, parameter subsets, the never-worse guard with
held-out pairs, and the adaptation study end to end on one tiny photo."""

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn
from torch.func import functional_call

from f2n.nets.rrdbnet import RRDBNet
from f2n.eval.study_variants import L2Pull, StudyKnobs, lora_space, random_dihedral
from f2n.runtime.adapt import AdaptConfig, adapt, holdout_indices
from f2n.runtime.types import PatchBatch


def tiny_net(seed: int = 0) -> RRDBNet:
    torch.manual_seed(seed)
    return RRDBNet(num_block=2, num_feat=8, num_grow_ch=4)


def test_lora_deltas_folded_into_theta_equal_the_low_rank_forward() -> None:
    """conv(x, W + BA) must equal conv(x, W) + conv(conv(x, A), B): the plain weight set the
    engines get computes what the adapted low-rank network computes."""
    model = tiny_net()
    base = {k: v.detach() for k, v in model.named_parameters()}
    space = lora_space(base, 1, rank=3)
    g = torch.Generator().manual_seed(2)
    for key, value in space.trainable.items():  # B is zero at the start: give it values
        value.copy_(torch.randn(value.shape, generator=g) * 0.1)

    def low_rank_branch(name: str):
        def hook(conv: nn.Conv2d, inputs: tuple[torch.Tensor], output: torch.Tensor) -> torch.Tensor:
            factor_a = space.trainable[f"{name}.weight.lora_a"]
            factor_b = space.trainable[f"{name}.weight.lora_b"]
            a_conv = factor_a.view(factor_a.shape[0], *conv.weight.shape[1:])
            hidden = F.conv2d(inputs[0], a_conv, stride=conv.stride, padding=conv.padding, dilation=conv.dilation)
            return output + F.conv2d(hidden, factor_b[:, :, None, None])
        return hook

    x = torch.rand(2, 3, 12, 12, generator=g)
    handles = [module.register_forward_hook(low_rank_branch(name))
               for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]
    with torch.no_grad():
        branched = model(x)
    for handle in handles:
        handle.remove()
    with torch.no_grad():
        folded = functional_call(model, space.fold(base), (x,))
        plain = model(x)
    assert (branched - plain).abs().max() > 1e-3  # the deltas do change the output
    torch.testing.assert_close(folded, branched, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("subset", ["tail", "bias", "lora"])
def test_parameter_subsets_leave_the_rest_of_theta_untouched(subset: str) -> None:
    model = tiny_net()
    g = torch.Generator().manual_seed(3)
    lq = torch.rand(4, 3, 8, 8, generator=g)
    patches = PatchBatch(lq, torch.rand(4, 3, 32, 32, generator=g), torch.ones(4, 1, 32, 32))
    if subset == "bias":  # the runtime's own subset; tail and lora are the study's
        result = adapt(model, patches, AdaptConfig(steps=2, lr=1e-2, params="bias", holdout=0))
    else:
        result = adapt(model, patches, AdaptConfig(steps=2, lr=1e-2, params="all", holdout=0),
                       variant=StudyKnobs(params=subset, tail_blocks=1).variant())
    moved = {k for k, v in result.weights.items() if not torch.equal(v, result.base[k])}
    allowed = {"tail": lambda k: k.startswith(("body.1.", "conv_body", "conv_up", "conv_hr", "conv_last")),
               "bias": lambda k: k.endswith(".bias"),
               "lora": lambda k: k.endswith(".weight")}[subset]
    assert moved and all(allowed(k) for k in moved)
    if subset == "tail":
        assert not any(k.startswith("body.0.") for k in moved)


def test_l2_pull_keeps_theta_prime_nearer_theta() -> None:
    model = tiny_net()
    g = torch.Generator().manual_seed(3)
    patches = PatchBatch(torch.rand(4, 3, 8, 8, generator=g), torch.rand(4, 3, 32, 32, generator=g),
                         torch.ones(4, 1, 32, 32))
    config = AdaptConfig(steps=4, lr=1e-2, params="all", holdout=0)
    drift = {}
    for pull in (0.0, 1e4):
        result = adapt(model, patches, config, variant=StudyKnobs(l2_pull=pull).variant())
        drift[pull] = sum(float(((result.weights[k] - result.base[k]) ** 2).sum()) for k in result.base)
    assert 0 < drift[1e4] < 0.5 * drift[0.0]
    assert L2Pull(2.0) == L2Pull(2.0) and hash(L2Pull(2.0)) == hash(L2Pull(2.0))  # one compiled step per weight


def test_flips_and_rotations_move_each_pair_as_one() -> None:
    """A target that is the LQ patch upsampled stays so: LQ, target and weight turn alike."""
    g = torch.Generator().manual_seed(4)
    lq = torch.rand(6, 3, 8, 8, generator=g)
    target = F.interpolate(lq, scale_factor=4, mode="nearest")
    batch = random_dihedral(PatchBatch(lq, target, target[:, :1]), torch.Generator().manual_seed(5))
    assert not torch.equal(batch.lq, lq)
    torch.testing.assert_close(F.interpolate(batch.lq, scale_factor=4, mode="nearest"), batch.target, rtol=0, atol=0)
    torch.testing.assert_close(batch.weight, batch.target[:, :1], rtol=0, atol=0)


def _pairs_for_guard(model: nn.Module, *, held_target_network: nn.Module, seed: int) -> tuple[PatchBatch, AdaptConfig]:
    """12 pairs; the training ones ask for noise, the held-out ones for ``held_target_network``'s output."""
    config = AdaptConfig(steps=6, lr=1e-2, holdout=0.25, patience=6)
    g = torch.Generator().manual_seed(4)
    lq = torch.rand(12, 3, 8, 8, generator=g)
    target = torch.rand(12, 3, 32, 32, generator=g)
    _, held = holdout_indices(12, config.holdout, seed)
    with torch.no_grad():
        target[held] = held_target_network(lq[held])
    return PatchBatch(lq, target, torch.ones(12, 1, 32, 32)), config


def test_guard_returns_the_base_weights_when_held_out_loss_does_not_improve() -> None:
    """Held-out targets are the base network's own output (loss 0 at θ, so nothing can beat θ);
    the training pairs pull θ away."""
    model = tiny_net()
    patches, config = _pairs_for_guard(model, held_target_network=model, seed=5)
    result = adapt(model, patches, config, seed=5)
    assert not result.adapted
    assert "held-out" in result.reason and "base" in result.reason
    assert result.holdout_losses[0] == pytest.approx(0, abs=1e-6) and min(result.holdout_losses[1:]) > 0
    assert all(torch.equal(result.weights[k], result.base[k]) for k in result.base)
    unguarded = adapt(model, patches, AdaptConfig(**{**config.__dict__, "guard": False}), seed=5)
    assert unguarded.adapted and any(not torch.equal(unguarded.weights[k], unguarded.base[k]) for k in unguarded.base)


def test_guard_keeps_the_adapted_weights_when_held_out_loss_improves() -> None:
    """Every pair (held-out ones included) asks for the output of a slightly different network."""
    model, goal = tiny_net(), tiny_net()
    with torch.no_grad():
        goal.conv_last.bias += 0.2
    g = torch.Generator().manual_seed(6)
    lq = torch.rand(12, 3, 8, 8, generator=g)
    with torch.no_grad():
        patches = PatchBatch(lq, goal(lq), torch.ones(12, 1, 32, 32))
    result = adapt(model, patches, AdaptConfig(steps=5, lr=1e-2, holdout=0.25), seed=7)
    assert result.adapted and result.reason == ""
    assert result.holdout_losses[result.best_step] < result.holdout_losses[0]
    assert any(not torch.equal(result.weights[k], result.base[k]) for k in result.base)


def test_early_stopping_stops_after_patience_steps_without_a_better_held_out_loss() -> None:
    model = tiny_net()
    patches, config = _pairs_for_guard(model, held_target_network=model, seed=5)
    result = adapt(model, patches, AdaptConfig(**{**config.__dict__, "steps": 20, "patience": 2, "guard": False}), seed=5)
    # held-out loss can only rise from θ: the best adapted step is the first, and two more end it
    assert result.best_step == 1 and len(result.losses) == 3


def test_study_runs_end_to_end_on_one_tiny_photo(shared_data: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from f2n.eval.study import cli

    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(shared_data / "photos_hq" / "selfie_1.jpg", photos)
    model = tiny_net()
    with torch.no_grad():
        model.conv_last.bias.fill_(0.5)  # outputs inside [0, 1], so that adaptation shows in the metrics
    checkpoint = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(checkpoint))
    out = tmp_path / "study.jsonl"
    result = CliRunner().invoke(cli, ["run", "--out", str(out), "--stage", "final", "--setting", "es",
                                      "--photo-dir", str(photos), "--lq-size", "48", "--face-lq", "24",
                                      "--checkpoint", str(checkpoint)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {(r["prior"], r["degradation"]) for r in rows} == {(p, d) for p in ("oracle", "oracle-restored")
                                                              for d in ("iid", "ood")}
    for row in rows:
        assert row["lq_hw"] == [48, 48] and 1 <= row["steps_taken"] <= 10
        assert row["delta"]["psnr"] == pytest.approx(row["adapted"]["psnr"] - row["base"]["psnr"])
        assert math.isfinite(row["delta"]["psnr_nonface"]) and row["delta"]["psnr"] != 0
        held = row["holdout_losses"]
        assert row["guard_adapts"] == (min(held[1:]) < held[0])
    table = CliRunner().invoke(cli, ["table", str(out), "--per-photo", "es"])
    assert table.exit_code == 0 and table.output.count("| oracle-restored |") == 2 + 2


class _BicubicX4(nn.Module):
    """A stand-in 'SR network' with a known output: bicubic x4 (one dummy parameter for its device)."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False) + self.anchor


def test_oracle_restored_prior_aligns_like_the_oracle(tmp_path: Path) -> None:
    """On a smooth ground truth a clean x4 down + bicubic up is nearly lossless, so the restored
    faces must match the oracle's pixel for pixel: a wrong crop offset would shift them."""
    import cv2
    import numpy as np

    from f2n.runtime.face.prior import OraclePrior, OracleRestoredPrior, make_prior

    yy, xx = np.mgrid[0:256, 0:320].astype(np.float32)
    gt = np.stack([0.5 + 0.4 * np.sin(xx / 23), 0.5 + 0.4 * np.cos(yy / 19), 0.5 + 0.3 * np.sin((xx + yy) / 31)], -1)
    angle, scale = 0.3, 1.7  # canvas -> aligned face: rotated, scaled, shifted
    affines = np.array([[[scale * np.cos(angle), -scale * np.sin(angle), -150.0],
                         [scale * np.sin(angle), scale * np.cos(angle), -220.0]]])
    aligned = np.zeros((1, 128, 128, 3), np.float32)
    oracle = OraclePrior(gt).restore(aligned, affines)
    restored = OracleRestoredPrior(gt, _BicubicX4()).restore(aligned, affines)
    inside = oracle[0].std(axis=-1) > 0  # pixels the warp took from the image, not the grey border
    error = np.abs(restored - oracle)[0][inside].mean()
    shifted = OraclePrior(np.roll(gt, 4, axis=1)).restore(aligned, affines)
    assert error < 0.2 * np.abs(shifted - oracle)[0][inside].mean()  # well below a 4-px shift's error
    path = tmp_path / "gt.png"
    cv2.imwrite(str(path), cv2.cvtColor((gt * 255).round().astype(np.uint8), cv2.COLOR_RGB2BGR))
    assert isinstance(make_prior(f"oracle-restored:{path}", sr_model=_BicubicX4(), lq_shape=(64, 80)),
                      OracleRestoredPrior)


REDEGNET_FIXTURES = Path(__file__).parent / "data" / "redegnet_official"


def _redegnet_folder(tmp_path: Path) -> Path:
    """The official-code fixture networks under the released files' names."""
    folder = tmp_path / "redegnet"
    folder.mkdir()
    for stem in ("net_deg", "net_synE", "net_synG"):
        shutil.copy(REDEGNET_FIXTURES / f"{stem}_small.pth", folder / f"{stem}_init.pth")
    return folder


def test_study_compares_redegnet_with_face_adaptation_on_the_same_case(shared_data: Path, tmp_path: Path) -> None:
    """One case, three settings: face patches, ReDegNet's synthetic pairs from the trained networks
    and from networks at their initialisation. Each adapts θ from its own pairs."""
    from safetensors.torch import save_file

    from f2n.eval.study import cli

    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(shared_data / "photos_hq" / "selfie_1.jpg", photos)
    model = tiny_net()
    with torch.no_grad():
        model.conv_last.bias.fill_(0.5)
    checkpoint = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(checkpoint))
    out = tmp_path / "study.jsonl"
    args = ["run", "--out", str(out), "--stage", "screen", "--photo-dir", str(photos), "--photo", "selfie_1.jpg",
            "--lq-size", "48", "--face-lq", "24", "--checkpoint", str(checkpoint),
            "--redegnet-weights", str(_redegnet_folder(tmp_path)), "--natural-bank", str(shared_data / "natural_hq")]
    for setting in ("bias", "redeg", "redeg-untrained"):
        args += ["--setting", setting]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    rows = {row["setting"]: row for row in map(json.loads, out.read_text().splitlines())}
    assert set(rows) == {"bias", "redeg", "redeg-untrained"}
    assert rows["redeg"]["patches"] == rows["redeg-untrained"]["patches"] == 16  # the natural pairs
    assert rows["bias"]["patches"] != 16 and rows["redeg"]["config"]["method"] == "redegnet"
    for row in rows.values():
        assert math.isfinite(row["delta"]["psnr_nonface"]) and row["delta"]["psnr"] != 0
    # different networks render different pairs, so θ′ and its output differ
    assert rows["redeg"]["adapted"]["psnr"] != rows["redeg-untrained"]["adapted"]["psnr"]
    assert rows["redeg"]["train_losses"] != rows["redeg-untrained"]["train_losses"]


def test_study_redegnet_settings_without_weights_is_one_line(tmp_path: Path) -> None:
    from f2n.eval.study import cli

    result = CliRunner().invoke(cli, ["run", "--out", str(tmp_path / "s.jsonl"), "--setting", "redeg"])
    assert result.exit_code == 5 and "--redegnet-weights" in result.output
    assert "Traceback" not in result.output


def test_redegnet_networks_load_from_a_training_run_folder(tmp_path: Path) -> None:
    """The latest step of each network, by number (step 10 is after step 9), from a run's checkpoints/."""
    from f2n.errors import ConfigError
    from f2n.runtime.redegnet import ReDegNets

    run = tmp_path / "run" / "checkpoints"
    run.mkdir(parents=True)
    for stem in ("net_deg", "net_synE", "net_synG"):
        shutil.copy(REDEGNET_FIXTURES / f"{stem}_small.pth", run / f"{stem}_0000010.pth")
        (run / f"{stem}_0000009.pth").write_bytes(b"not a weight file")  # older: must not be read
    nets = ReDegNets.from_folder(tmp_path / "run")
    assert nets.crop == 32
    (run / "net_synG_0000010.pth").unlink()
    (run / "net_synG_0000009.pth").unlink()
    with pytest.raises(ConfigError, match="net_synG"):
        ReDegNets.from_folder(run)


def test_pairs_held_out_separately_decide_the_guard_and_are_not_trained_on() -> None:
    """ReDegNet's check: trained on pairs asking for a brighter output, held out on pairs that θ
    already reproduces exactly: every step is worse on those, so θ is kept; without them the
    trained pairs' own held-out share would accept θ′."""
    model, goal = tiny_net(), tiny_net()
    with torch.no_grad():
        goal.conv_last.bias += 0.2
    g = torch.Generator().manual_seed(8)
    lq, other = torch.rand(12, 3, 8, 8, generator=g), torch.rand(4, 3, 8, 8, generator=g)
    with torch.no_grad():
        train = PatchBatch(lq, goal(lq), torch.ones(12, 1, 32, 32))
        exact = PatchBatch(other, model(other), torch.ones(4, 1, 32, 32))
    config = AdaptConfig(steps=4, lr=1e-2, holdout=0.25)
    assert adapt(model, train, config, seed=1).adapted
    guarded = adapt(model, train, config, seed=1, held_out=exact)
    assert not guarded.adapted and guarded.best_step == 0 and guarded.holdout_losses[0] == pytest.approx(0, abs=1e-6)
    assert "held-out face loss did not improve" in guarded.reason
    assert all(torch.equal(guarded.weights[k], guarded.base[k]) for k in guarded.base)
