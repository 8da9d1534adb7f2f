"""Tasks: one degradation per task on both images, reproducible from (seed, step, index)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from f2n.errors import ConfigError
from f2n.runtime.face.prior import CallablePrior
from f2n.training.config import (
    DataConfig,
    TrainConfig,
    config_from_dict,
    config_to_dict,
)
from f2n.training.data import list_images
from f2n.training.degradations import degrade, sample_params
from f2n.training.face_targets import prior_restorer, resolve_face_targets
from f2n.training.tasks import TaskSampler, make_task


def _image(seed: int, size: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    smooth = torch.nn.functional.interpolate(torch.rand(1, 3, size // 8, size // 8, generator=generator), size=(size, size),
                                             mode="bicubic", align_corners=False)
    return smooth[0].clamp(0, 1)


@pytest.mark.parametrize("seed", [3, 11])
def test_one_task_degrades_face_and_natural_image_alike(seed: int) -> None:
    """With the same picture as face and natural image (and crops covering it), a task's
    two LQ images are equal only if one degradation (noise draws included) served both."""
    image = _image(0, 64)
    task = make_task(image, image, sample_params(seed), 64, np.random.default_rng(0))
    torch.testing.assert_close(task.face_lq, task.natural_lq, rtol=0, atol=0)
    other = make_task(image, image, sample_params(seed + 1), 64, np.random.default_rng(0))
    assert not torch.equal(other.natural_lq, task.natural_lq)
    assert task.face_lq.shape == (1, 3, 16, 16) and task.natural_hq.shape == (1, 3, 64, 64)


def test_face_patch_and_lq_patch_are_aligned() -> None:
    """The LQ patch is the degraded face at the target crop's position / 4."""
    face = _image(1, 128)
    params = sample_params(5)
    task = make_task(face, _image(2, 32), params, 32, np.random.default_rng(7))
    whole_lq = degrade(face[None], params)
    # Find the crop by matching the target patch against the HQ face.
    target = task.face_target[0]
    found = [(y, x) for y in range(0, 97, 4) for x in range(0, 97, 4) if torch.equal(face[:, y:y + 32, x:x + 32], target)]
    assert len(found) == 1
    y, x = found[0]
    torch.testing.assert_close(task.face_lq[0], whole_lq[0, :, y // 4 : y // 4 + 8, x // 4 : x // 4 + 8], rtol=0, atol=0)


def test_sampler_is_reproducible_per_task_index(shared_data: Path) -> None:
    config = DataConfig(tasks_per_step=2, inner_patch=32, outer_patch=64, face_size=128)
    sampler = TaskSampler(list_images(shared_data / "faces_hq", "faces"),
                          list_images(shared_data / "natural_hq", "natural"), config, seed=0)
    batch = sampler.batch(step=4, start=0, count=2)
    # Task 1 computed alone (as worker 1 of 2 would) equals task 1 of the batch.
    alone = sampler.batch(step=4, start=1, count=1)
    torch.testing.assert_close(alone.natural_lq[0], batch.natural_lq[1], rtol=0, atol=0)
    torch.testing.assert_close(alone.face_target[0], batch.face_target[1], rtol=0, atol=0)
    assert not torch.equal(batch.natural_hq[0], batch.natural_hq[1])
    assert batch.face_lq.shape == (2, 3, 8, 8) and batch.natural_lq.shape == (2, 3, 16, 16)


def test_config_round_trips_and_rejects_bad_values() -> None:
    config = TrainConfig(data=DataConfig(faces_dir=Path("/x"), inner_patch=64))
    assert config_from_dict(config_to_dict(config)) == config
    with pytest.raises(ConfigError, match="inner_patch must be a multiple of 8"):
        TrainConfig(data=DataConfig(inner_patch=60))
    with pytest.raises(ConfigError, match="unknown data option"):
        config_from_dict({"data": {"patch": 3}})


def test_prior_targets_restore_the_bicubic_upsampled_lq_face() -> None:
    prior = CallablePrior(lambda faces: 1.0 - faces, name="negative")  # a stand-in prior, not GPEN
    restore = prior_restorer(prior)
    face_lq = torch.rand(1, 3, 8, 8)
    expected = 1.0 - torch.nn.functional.interpolate(face_lq, size=(32, 32), mode="bicubic", align_corners=False).clamp(0, 1)
    torch.testing.assert_close(restore(face_lq), expected)
    task = make_task(_image(4, 64), _image(5, 32), sample_params(1), 32, np.random.default_rng(0), restore)
    assert task.face_target.shape == (1, 3, 32, 32) and task.face_target.max() <= 1.0


def test_auto_face_targets_fall_back_to_gt_with_a_note() -> None:
    notes: list[str] = []
    assert resolve_face_targets("auto", torch.device("cpu"), notes.append) is None  # empty $F2N_HOME
    assert len(notes) == 1 and "GT faces" in notes[0] and "gpen-bfr-512" in notes[0]
    assert resolve_face_targets("gt", torch.device("cpu"), notes.append) is None
