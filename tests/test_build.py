"""The one pipeline factory: a checkpoint's adaptation settings, its MaskNet, the engine and
the prior resolved in one place, and every command (CLI, demo, eval) going through it."""

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from f2n.errors import ConfigError, WeightsError
from f2n.eval.run import EvalConfig, load_networks
from f2n.nets import MaskNet
from f2n.runtime import AdaptationSettings, OraclePrior, build_pipeline, cli, resolve_settings, write_image
from f2n.runtime.demo import demo_pair
from f2n.runtime.face_patches import PatchConfig
from f2n.weights import load_sr_network, save_f2n_checkpoint

META_TRAINED = {"alpha": 0.01, "steps": 3, "optimizer": "sgd", "patches_per_image": 24, "patch_lq_size": 12}
# unlike every f2n default


@pytest.fixture(scope="module")
def meta_checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_rrdbnet) -> Path:
    """An f2n checkpoint with adaptation defaults and a MaskNet, as f2n-train writes it."""
    sr, masknet = tiny_rrdbnet(), MaskNet(num_feat=8, num_layers=3)
    path = tmp_path_factory.mktemp("meta") / "meta.safetensors"
    return save_f2n_checkpoint(path, sr.state_dict(), masknet.state_dict(), META_TRAINED)


def test_each_setting_is_the_users_else_the_checkpoints_else_the_default(meta_checkpoint: Path,
                                                                        tiny_weights: Path) -> None:
    meta, plain = load_sr_network(meta_checkpoint), load_sr_network(tiny_weights)
    default = AdaptationSettings(steps=20, lr=1e-4, optimizer="adam", patches=PatchConfig(count=8))
    resolved = resolve_settings({"steps": 7, "lr": None, "guard": False}, meta, default)
    assert resolved == AdaptationSettings(steps=7, lr=0.01, optimizer="sgd", params="all", guard=False, holdout=0.0,
                                          patches=PatchConfig(lq_size=12, count=8, per_image=24))
    assert resolve_settings({"patches_per_face": 2}, meta, default).patches == PatchConfig(lq_size=12, count=2)
    assert resolve_settings({}, plain, default) == default
    with pytest.raises(ConfigError, match="unknown adaptation settings"):
        resolve_settings({"stepz": 1}, meta, default)


def test_the_stock_network_spends_a_patch_budget_per_photo_unless_told_per_face(tiny_weights: Path) -> None:
    """Issue 16's bounded cost: by default one step costs the same for 1 or 10 faces."""
    plain = load_sr_network(tiny_weights)
    assert resolve_settings({}, plain).patches.per_image == 8
    per_face = resolve_settings({"patches_per_face": 4}, plain).patches
    assert per_face.per_image is None and per_face.count == 4


def test_a_meta_trained_checkpoint_adapts_as_it_was_trained(meta_checkpoint: Path) -> None:
    pipeline = build_pipeline(meta_checkpoint, device="cpu", prior=OraclePrior(demo_pair()[0]))
    adapt = pipeline.config.adapt
    assert (adapt.steps, adapt.lr, adapt.optimizer) == (3, 0.01, "sgd")
    assert (adapt.params, adapt.holdout, adapt.guard) == ("all", 0.0, False)  # its trained step, on every pair
    assert isinstance(pipeline.method.masknet, MaskNet)
    overridden = build_pipeline(meta_checkpoint, device="cpu", prior=OraclePrior(demo_pair()[0]),
                                requested={"steps": 1, "patches_per_face": 2})
    adapt = overridden.config.adapt
    assert (adapt.steps, adapt.lr, adapt.optimizer) == (1, 0.01, "sgd")
    assert overridden.method.face.patches == PatchConfig(lq_size=12, count=2)


def test_the_demo_honours_the_checkpoints_settings(meta_checkpoint: Path) -> None:
    result = CliRunner().invoke(cli.command, ["--demo", "--checkpoint", str(meta_checkpoint), "--device", "cpu"])
    assert "adaptation sgd α=0.01 n=3 on cpu" in result.output, result.output
    assert "Traceback" not in result.output


def test_eval_evaluates_the_checkpoints_own_step_count(meta_checkpoint: Path, tiny_weights: Path) -> None:
    base, meta = load_networks(EvalConfig(base_network=str(tiny_weights), checkpoints=(str(meta_checkpoint),)))
    assert base.steps == (1, 10, 20) and meta.steps == (1, 3, 10, 20)
    assert load_networks(EvalConfig(base_network=str(meta_checkpoint), steps=(2,)))[0].steps == (2,)


@pytest.mark.parametrize("scale", [2, 1])
def test_a_network_of_another_scale_is_refused_at_load_in_one_line(scale: int, tmp_path: Path, tiny_rrdbnet,
                                                                   write_weights) -> None:
    path = write_weights(tiny_rrdbnet(scale=scale).state_dict(), tmp_path / f"x{scale}.safetensors")
    with pytest.raises(WeightsError, match=f"x{scale} network; f2n adapts and runs x4 networks only"):
        build_pipeline(path, device="cpu")
    photo, out = tmp_path / "photo.png", tmp_path / "out"
    write_image(photo, demo_pair()[1])
    result = CliRunner().invoke(cli.command, [str(photo), "--out", str(out), "--checkpoint", str(path)])
    assert result.exit_code == WeightsError.exit_code and result.output.count("\n") == 1
    assert result.output.startswith("error: ") and not out.exists()


def test_snapshots_equal_runs_stopped_at_those_steps(tiny_weights: Path) -> None:
    """enhance_snapshots (what f2n-eval reads) gives, for each n, what a run of n steps on all the
    face pairs (none held out: no early stop, no guard) writes."""
    gt, lq = demo_pair()
    common = dict(device="cpu", prior=OraclePrior(gt), tile=64, overlap=16)
    snapshots, result = build_pipeline(tiny_weights, requested={"steps": 3, "lr": 0.01}, **common).enhance_snapshots(
        lq, (1, 3))
    assert result.adaptation is not None and sorted(snapshots) == [1, 3]
    for steps, rgb in snapshots.items():
        alone = build_pipeline(tiny_weights, requested={"steps": steps, "lr": 0.01, "holdout": 0.0},
                               **common).enhance(lq).rgb
        np.testing.assert_allclose(rgb, alone, atol=1e-6)
    assert np.abs(snapshots[1] - snapshots[3]).max() > 1e-3


BROKEN_ENGINE_MODULE = """
import sys
from importlib.abc import MetaPathFinder

class BrokenOrtEngine(MetaPathFinder):  # a bug in f2n's own code, not a missing onnxruntime
    def find_spec(self, name, path, target=None):
        if name == "f2n.export.ort_engine":
            raise ImportError("cannot import name 'gone' from 'f2n.weights.fit'")

sys.meta_path.insert(0, BrokenOrtEngine())
from f2n.errors import EngineUnavailableError
try:
    from f2n.runtime.build import build_pipeline
    build_pipeline(sys.argv[1], engine="onnx", device="cpu", adapt_enabled=False)
except EngineUnavailableError as error:
    print(f"unavailable: {error}")
    sys.exit(EngineUnavailableError.exit_code)
"""


def test_a_broken_f2n_import_in_an_engine_is_a_bug_not_an_unavailable_engine(tiny_weights: Path) -> None:
    """Only the engine's own package missing is 'engine unavailable' (exit 4, its own check in
    f2n.export); an ImportError of f2n's own code surfaces as the bug it is."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", BROKEN_ENGINE_MODULE, str(tiny_weights)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode not in (0, 4), result.stdout + result.stderr
    assert "ImportError: cannot import name 'gone'" in result.stderr and "unavailable" not in result.stdout
