"""Patch sampling: positions inside the box, seeded, exact LQ/x4 correspondence, small faces
padded by reflection with zero validity on the padding, per-face counts and per-image budgets."""

import numpy as np
import pytest

from f2n.errors import ConfigError
from f2n.runtime.face.patches import (
    PatchConfig,
    counts_per_face,
    crop_pairs,
    sample_pairs,
    sample_patch_boxes,
)


def _images(height: int = 40, width: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """An LQ image and an x4 image whose 4x4 blocks hold the LQ pixel's value."""
    rng = np.random.default_rng(0)
    lq = rng.random((height, width, 3), dtype=np.float32)
    return lq, np.repeat(np.repeat(lq, 4, axis=0), 4, axis=1)


def test_patch_boxes_stay_inside_the_face_box_and_follow_the_seed() -> None:
    box = (5, 7, 40, 30)
    boxes = sample_patch_boxes(box, 200, 16, np.random.default_rng(1))
    assert boxes.shape == (200, 4)
    assert (boxes[:, 0] >= 5).all() and (boxes[:, 2] <= 40).all() and (boxes[:, 1] >= 7).all() and (boxes[:, 3] <= 30).all()
    assert ((boxes[:, 2] - boxes[:, 0]) == 16).all() and ((boxes[:, 3] - boxes[:, 1]) == 16).all()
    assert {int(x) for x in boxes[:, 0]} == set(range(5, 25))  # every start position is reachable
    np.testing.assert_array_equal(boxes, sample_patch_boxes(box, 200, 16, np.random.default_rng(1)))


def test_pairs_cover_the_same_area_at_both_scales() -> None:
    lq, x4 = _images()
    pairs = sample_pairs(lq, x4, [(2, 3, 30, 35), (30, 10, 50, 40)], PatchConfig(count=5), np.random.default_rng(2))
    assert pairs.lq.shape == (10, 16, 16, 3) and pairs.target.shape == (10, 64, 64, 3)
    np.testing.assert_array_equal(pairs.target[:, ::4, ::4], pairs.lq)
    np.testing.assert_array_equal(pairs.face_index, [0] * 5 + [1] * 5)
    assert (pairs.valid == 1).all()


def test_a_face_smaller_than_a_patch_gives_its_box_padded_by_reflection() -> None:
    lq, x4 = _images()
    pairs = sample_pairs(lq, x4, [(10, 12, 20, 40)], PatchConfig(count=7), np.random.default_rng(0))
    assert len(pairs.lq) == 1  # 10 px wide: one pair, the box itself
    np.testing.assert_array_equal(pairs.boxes[0], [10, 12, 20, 28])
    np.testing.assert_array_equal(pairs.lq[0, :, :10], lq[12:28, 10:20])
    np.testing.assert_array_equal(pairs.lq[0, :, 10:], lq[12:28, 20 - 6:20][:, ::-1])  # mirrored
    assert (pairs.valid[0, :, :40] == 1).all() and (pairs.valid[0, :, 40:] == 0).all()
    np.testing.assert_array_equal(pairs.target[0, ::4, ::4], pairs.lq[0])


def test_per_image_budget_is_spread_over_faces_by_area() -> None:
    boxes = [(0, 0, 40, 40), (0, 0, 20, 20), (0, 0, 20, 20)]  # areas 1600, 400, 400
    assert counts_per_face(boxes, PatchConfig(per_image=16)) == [10, 3, 3]  # 3 + 13 * (4/6, 1/6, 1/6), largest remainder
    assert counts_per_face(boxes, PatchConfig(per_image=3)) == [1, 1, 1]  # at least one each
    assert counts_per_face(boxes, PatchConfig(per_image=2)) == [1, 1, 0]  # fewer than faces: the largest, earlier on a tie
    assert counts_per_face(boxes, PatchConfig(count=5)) == [5, 5, 5]  # per face, the default
    # a face smaller than a patch gives one pair whatever it is given: the rest goes to the others
    assert counts_per_face([(0, 0, 10, 40), (0, 0, 20, 20)], PatchConfig(per_image=16)) == [1, 15]
    assert counts_per_face([(0, 0, 10, 40), (0, 0, 12, 12)], PatchConfig(per_image=16)) == [1, 1]


def test_per_image_pairs_total_the_budget() -> None:
    lq, x4 = _images()
    boxes = [(0, 0, 20, 20), (20, 20, 40, 40), (30, 0, 50, 20)]
    pairs = sample_pairs(lq, x4, boxes, PatchConfig(per_image=7), np.random.default_rng(0))
    assert len(pairs.lq) == 7
    np.testing.assert_array_equal(np.bincount(pairs.face_index), [3, 2, 2])
    again = sample_pairs(lq, x4, boxes, PatchConfig(per_image=7), np.random.default_rng(0))
    np.testing.assert_array_equal(pairs.boxes, again.boxes)  # seeded


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="per face must be >= 1"):
        PatchConfig(count=0)
    with pytest.raises(ConfigError, match="per image must be >= 1"):
        PatchConfig(per_image=0)
    lq, x4 = _images()
    with pytest.raises(ConfigError, match="expected x4"):
        crop_pairs(lq, x4[:-4], np.array([[0, 0, 16, 16]]), 16)
