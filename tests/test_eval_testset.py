"""Test-set builder: reproducible files, GT cropped to the scale, LQ re-creatable from its JSON."""

import json

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from f2n.errors import ConfigError, InputImageError
from f2n.eval.testset import build_test_set, load_test_set
from f2n.training.degradations import DegradationParams, degrade


@pytest.fixture
def hq_dir(tmp_path):
    folder = tmp_path / "hq"
    folder.mkdir()
    astronaut = skimage.data.astronaut()
    Image.fromarray(astronaut[10:113, 120:218]).save(folder / "a.png")  # 98 x 103: not multiples of 4
    Image.fromarray(astronaut[200:300, 200:280]).save(folder / "b.jpg", quality=95)
    (folder / "notes.txt").write_text("not an image")
    return folder


def _files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_files_and_another_seed_does_not(hq_dir, tmp_path):
    build_test_set(hq_dir, tmp_path / "one", kind="iid", seed=7)
    build_test_set(hq_dir, tmp_path / "two", kind="iid", seed=7)
    build_test_set(hq_dir, tmp_path / "three", kind="iid", seed=8)
    one, two, three = (_files(tmp_path / n) for n in ("one", "two", "three"))
    assert len(one) == 7  # manifest + 2 x (gt, lq, params)
    assert one == two
    lq_a = [k for k in one if str(k) == "lq/a.png"][0]
    assert one[lq_a] != three[lq_a]


def test_gt_is_cropped_to_the_scale_and_lq_is_its_quarter(hq_dir, tmp_path):
    pairs = build_test_set(hq_dir, tmp_path / "set", kind="ood", seed=1)
    manifest, loaded = load_test_set(tmp_path / "set")
    assert manifest["kind"] == "ood" and [p.name for p in loaded] == ["a", "b"]
    gt, lq = np.asarray(Image.open(pairs[0].gt)), np.asarray(Image.open(pairs[0].lq))
    assert gt.shape == (100, 96, 3) and lq.shape == (25, 24, 3)
    np.testing.assert_array_equal(gt, skimage.data.astronaut()[10:110, 120:216])


@pytest.mark.parametrize("kind", ["iid", "ood"])
def test_recorded_parameters_reproduce_the_lq(hq_dir, tmp_path, kind):
    pair = build_test_set(hq_dir, tmp_path / kind, kind=kind, seed=3)[1]
    record = json.loads(pair.params.read_text())
    params = DegradationParams.from_dict(record["params"])
    assert record["kind"] == kind and params.ood == (kind == "ood")
    assert (params.first.blur.family == "motion") == (kind == "ood")
    gt = torch.from_numpy(np.asarray(Image.open(pair.gt)).copy()).permute(2, 0, 1)[None].float() / 255
    again = (degrade(gt, params)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(again, np.asarray(Image.open(pair.lq)))


def test_max_side_shrinks_before_cropping(hq_dir, tmp_path):
    pair = build_test_set(hq_dir, tmp_path / "small", kind="iid", seed=0, max_side=80)[0]
    assert Image.open(pair.gt).size == (76, 80)  # 98 x 103 -> 76 x 80 (long side 80), multiples of 4


def test_bad_inputs_raise_specific_errors(tmp_path, hq_dir):
    with pytest.raises(InputImageError, match="HQ folder not found"):
        build_test_set(tmp_path / "missing", tmp_path / "out", kind="iid", seed=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputImageError, match="no images"):
        build_test_set(tmp_path / "empty", tmp_path / "out", kind="iid", seed=0)
    with pytest.raises(ConfigError, match="expected 'iid' or 'ood'"):
        build_test_set(hq_dir, tmp_path / "out", kind="both", seed=0)
    with pytest.raises(InputImageError, match="not a test set"):
        load_test_set(tmp_path / "empty")
