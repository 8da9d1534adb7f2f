"""A checkpoint's patch and MaskNet settings: written, read back, checked, and turned into
the face stage's PatchConfig unless an option says otherwise."""

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from f2n.errors import ConfigError, WeightsError
from f2n.nets import MaskNet, RRDBNet
from f2n.runtime import cli
from f2n.runtime.build import checkpoint_masknet, patch_config
from f2n.runtime.demo import demo_pair
from f2n.runtime.face_patches import PatchConfig
from f2n.runtime.images import write_image
from f2n.weights import load_sr_network, save_f2n_checkpoint
from f2n.weights.checkpoint import PatchDefaults

TINY = {"num_block": 1, "num_feat": 8, "num_grow_ch": 4}


def _checkpoint(path: Path, **meta: object) -> Path:
    torch.manual_seed(0)
    return save_f2n_checkpoint(path, RRDBNet(**TINY).state_dict(), MaskNet(num_feat=8).state_dict(), meta)


def test_patch_and_masknet_settings_come_back_from_the_file(tmp_path: Path) -> None:
    path = _checkpoint(tmp_path / "c.safetensors", patches_per_image=24, patch_lq_size=12,
                       masknet_lq_resize="tf1-bicubic")
    loaded = load_sr_network(path)
    assert loaded.patch_defaults == PatchDefaults(per_image=24, lq_size=12)
    assert loaded.masknet_lq_resize == "tf1-bicubic"
    assert checkpoint_masknet(loaded.masknet_state, "cpu", loaded.masknet_lq_resize).lq_resize == "tf1-bicubic"
    plain = load_sr_network(_checkpoint(tmp_path / "plain.safetensors"))
    assert plain.patch_defaults is None and plain.masknet_lq_resize == "bicubic"


def test_options_override_the_checkpoint_and_exclude_each_other() -> None:
    defaults = PatchDefaults(per_image=24, lq_size=12)
    assert patch_config(None, None, defaults) == PatchConfig(lq_size=12, per_image=24)
    assert patch_config(4, None, defaults) == PatchConfig(lq_size=12, count=4)  # per face now
    assert patch_config(None, 9, PatchDefaults(per_face=16)) == PatchConfig(per_image=9)
    assert patch_config(None, None, None) == PatchConfig()
    with pytest.raises(ConfigError, match="exclude each other"):
        patch_config(4, 9, None)
    with pytest.raises(ConfigError, match="per image must be >= 1"):
        patch_config(None, 0, None)


@pytest.mark.parametrize("meta, message", [
    ({"patches_per_face": 16, "patches_per_image": 16}, "both patches_per_face and patches_per_image"),
    ({"patches_per_image": 0}, "not integers >= 1"),
    ({"patch_lq_size": "16"}, "not integers >= 1"),
    ({"masknet_lq_resize": "nearest"}, "expected one of bicubic, tf1-bicubic"),
])
def test_bad_settings_are_refused_before_writing(tmp_path: Path, meta: dict, message: str) -> None:
    with pytest.raises(WeightsError, match=message):
        _checkpoint(tmp_path / "bad.safetensors", **meta)
    assert not (tmp_path / "bad.safetensors").exists()


def test_the_cli_takes_the_checkpoint_budget_unless_told_otherwise(tmp_path: Path) -> None:
    write_image(tmp_path / "photo.png", demo_pair()[1])  # one face
    checkpoint = _checkpoint(tmp_path / "c.safetensors", patches_per_image=5, alpha=1e-3, steps=1, optimizer="sgd")
    for options, expected in [([], 5), (["--patches-per-face", "3"], 3), (["--patches-per-image", "2"], 2)]:
        report = tmp_path / "r.json"
        result = CliRunner().invoke(cli.command, [str(tmp_path / "photo.png"), "--out", str(tmp_path / "sr.png"),
                                                  "--checkpoint", str(checkpoint), "--prior", "numpy:copy",
                                                  "--report", str(report), "--overwrite", "--tile", "64",
                                                  "--tile-overlap", "16", "--no-progress", *options])
        assert result.exit_code == 0, result.output
        photo = json.loads(report.read_text())["photos"][0]
        assert [face["num_patches"] for face in photo["faces"] if face["used"]] == [expected], options
