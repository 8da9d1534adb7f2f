"""Issue 18 item 4: the face stage's x4 canvas held only around the faces must give the pixels,
the pairs and the paste of the whole-photo canvas it replaces (built here the old way, from
cv2.resize and paste_back, as the reference)."""

import cv2
import numpy as np
import pytest

from f2n.runtime.face.align import estimate_affine, face_template, inverse_affine, paste_back, scale_affine_to_canvas
from f2n.runtime.face.patches import PatchConfig, sample_pairs
from f2n.runtime.face.regions import (
    RegionCanvas,
    face_regions,
    full_canvas,
    mask_canvas,
    merge_overlapping,
    paste_regions,
)

SCALE, FACE = 4, 64
# LQ face boxes: two overlapping faces, one alone, one cut by the photo's right edge
BOXES = [(10, 8, 34, 32), (28, 14, 52, 38), (70, 40, 90, 60), (100, 5, 112, 25)]


@pytest.fixture(scope="module")
def faces() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(photo 64x112, restored faces (4, 64, 64, 3), LQ->face affines scaled to the x4 canvas)."""
    rng = np.random.default_rng(7)
    image = cv2.GaussianBlur(rng.random((64, 112, 3), np.float32), (5, 5), 1.0)
    template = face_template(FACE)
    affines = []
    for index, (x0, y0, x1, y1) in enumerate(BOXES):
        size = x1 - x0
        landmarks = (template / FACE) * size + np.array([x0, y0]) + rng.normal(0, 0.3, (5, 2))
        angle = np.deg2rad(10 * index)
        landmarks = (landmarks - landmarks.mean(0)) @ np.array([[np.cos(angle), -np.sin(angle)],
                                                                 [np.sin(angle), np.cos(angle)]]) + landmarks.mean(0)
        affines.append(scale_affine_to_canvas(estimate_affine(landmarks, template), SCALE))
    restored = rng.random((len(BOXES), FACE, FACE, 3), np.float32)
    return image, restored, np.stack(affines)


def whole_canvas(image: np.ndarray, restored: np.ndarray, affines: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the face stage built before: the bicubic x4 of the whole photo, every face pasted."""
    height, width = image.shape[:2]
    canvas = np.clip(cv2.resize(image, (SCALE * width, SCALE * height), interpolation=cv2.INTER_CUBIC), 0, 1)
    mask = np.zeros(canvas.shape[:2], np.float32)
    for face, affine in zip(restored, affines):
        canvas, face_mask = paste_back(canvas, face, inverse_affine(affine))
        mask = np.maximum(mask, face_mask)
    return canvas, mask


def test_regions_hold_the_whole_canvas_pixels_where_the_faces_are(faces) -> None:
    image, restored, affines = faces
    regions = face_regions(image, restored, affines, BOXES, SCALE)
    canvas, mask = whole_canvas(image, restored, affines)
    assert len(regions) == 3  # the two overlapping faces share one region
    covered = np.zeros(mask.shape, bool)
    for region in regions:
        x0, y0, x1, y1 = region.box
        np.testing.assert_array_equal(region.restored, canvas[y0:y1, x0:x1])
        np.testing.assert_array_equal(region.mask, mask[y0:y1, x0:x1])
        assert not covered[y0:y1, x0:x1].any()  # disjoint
        covered[y0:y1, x0:x1] = True
    assert mask[~covered].max() == 0  # nothing of the paste lies outside the regions
    assert covered.mean() < 0.5  # and they are the faces' areas, not the photo
    np.testing.assert_array_equal(full_canvas(image, regions, SCALE), canvas)
    np.testing.assert_array_equal(mask_canvas(regions, mask.shape), mask)


def test_pairs_from_the_regions_are_the_pairs_from_the_whole_canvas(faces) -> None:
    image, restored, affines = faces
    regions = face_regions(image, restored, affines, BOXES, SCALE)
    canvas, _ = whole_canvas(image, restored, affines)
    config = PatchConfig(count=12)
    sparse = sample_pairs(image, RegionCanvas(regions, canvas.shape[:2]), BOXES, config, np.random.default_rng(3))
    dense = sample_pairs(image, canvas, BOXES, config, np.random.default_rng(3))
    np.testing.assert_array_equal(sparse.boxes, dense.boxes)
    np.testing.assert_array_equal(sparse.lq, dense.lq)
    np.testing.assert_array_equal(sparse.target, dense.target)
    with pytest.raises(IndexError, match="lie in no face region"):
        RegionCanvas(regions, canvas.shape[:2])[0:4, 0:4]


def test_paste_by_region_is_the_whole_canvas_blend(faces) -> None:
    image, restored, affines = faces
    regions = face_regions(image, restored, affines, BOXES, SCALE)
    canvas, mask = whole_canvas(image, restored, affines)
    sr = np.random.default_rng(1).random(canvas.shape, np.float32)
    weight = np.clip(mask, 0, 1)[:, :, None]
    expected = sr * (1 - weight) + canvas * weight
    np.testing.assert_array_equal(paste_regions(sr.copy(), regions), expected)


def test_merge_overlapping_joins_chains_and_keeps_order() -> None:
    boxes = [(0, 0, 10, 10), (20, 0, 30, 10), (8, 8, 22, 12), (40, 40, 50, 50), (10, 0, 20, 5)]
    merged = merge_overlapping(boxes)
    assert merged == [((0, 0, 30, 12), [0, 1, 2, 4]), ((40, 40, 50, 50), [3])]
