"""Alignment geometry: template fit, the x4 half-pixel offset, warp and paste-back round trip."""

from pathlib import Path

import numpy as np
import pytest

from f2n.runtime.psnr import psnr
from f2n.runtime.face.align import (
    FFHQ_TEMPLATE_512,
    estimate_affine,
    face_mask,
    face_template,
    inverse_affine,
    paste_back,
    scale_affine_to_canvas,
    warp_face,
)
from f2n.runtime.images import read_image


def _smooth_image(height: int, width: int, scale: float = 1.0) -> np.ndarray:
    """An analytic image sampled at LQ coordinates (x4 pixel p sits at LQ (p - 1.5) / 4)."""
    offset = (scale - 1) / 2
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    x, y = (xx - offset) / scale, (yy - offset) / scale
    return np.stack([0.5 + 0.4 * np.sin(x / 5), 0.5 + 0.4 * np.cos(y / 7), 0.5 + 0.3 * np.sin((x + y) / 9)],
                    axis=2).astype(np.float32)


def test_affine_maps_landmarks_onto_the_template() -> None:
    rotation = np.deg2rad(12)
    matrix = 0.3 * np.array([[np.cos(rotation), -np.sin(rotation)], [np.sin(rotation), np.cos(rotation)]])
    landmarks = FFHQ_TEMPLATE_512 @ matrix.T + [40, 25]  # the template seen small, rotated and shifted
    affine = estimate_affine(landmarks, face_template(512))
    mapped = landmarks @ affine[:, :2].T + affine[:, 2]
    np.testing.assert_allclose(mapped, FFHQ_TEMPLATE_512, atol=1e-3)
    np.testing.assert_allclose(inverse_affine(affine)[:, :2] @ affine[:, :2], np.eye(2), atol=1e-9)
    with pytest.raises(ValueError, match="no similarity"):
        estimate_affine(np.zeros((5, 2)), face_template(512))


def test_x4_affine_has_the_half_pixel_offset() -> None:
    affine = estimate_affine(FFHQ_TEMPLATE_512 * 0.1 + [10, 12], face_template(512))
    affine_x4 = scale_affine_to_canvas(affine, 4)
    point = np.array([13.25, 17.5])
    on_face = affine[:, :2] @ point + affine[:, 2]
    on_face_from_x4 = affine_x4[:, :2] @ (4 * point + 1.5) + affine_x4[:, 2]
    np.testing.assert_allclose(on_face_from_x4, on_face, atol=1e-9)


def test_lq_and_x4_warps_give_the_same_aligned_face() -> None:
    lq = _smooth_image(80, 90)
    x4 = _smooth_image(320, 360, scale=4)  # the same picture sampled on the x4 grid
    affine = estimate_affine(FFHQ_TEMPLATE_512 * 0.12 + [20, 15], face_template(256))
    from_lq = warp_face(lq, affine, 256)
    from_x4 = warp_face(x4, scale_affine_to_canvas(affine, 4), 256)
    assert psnr(from_lq[16:-16, 16:-16], from_x4[16:-16, 16:-16]) > 45  # measured 56 dB
    no_offset = np.concatenate([affine[:, :2] / 4, affine[:, 2:]], axis=1)  # x4 = 4x, the usual mistake
    shifted = warp_face(x4, no_offset, 256)
    assert psnr(from_lq[16:-16, 16:-16], shifted[16:-16, 16:-16]) < 40  # measured 35 dB


def test_paste_mask_is_soft_and_full_inside() -> None:
    mask = face_mask(512)
    assert mask[256, 256] == pytest.approx(1.0) and mask[0, 0] < 1e-3
    assert 0.05 < mask[256, 25] < 0.95  # feathered edge


def test_align_and_paste_back_round_trip_on_a_real_face(shared_data: Path) -> None:
    from f2n.runtime.face.detect import RetinaFaceDetector

    image = read_image(shared_data / "real_lq" / "000013p.png").rgb
    detections = RetinaFaceDetector()(image)
    x0, y0, x1, y1 = detections.boxes[0].astype(int)
    affine = estimate_affine(detections.landmarks[0], face_template(512))
    face = warp_face(image, affine, 512)
    pasted, mask = paste_back(image, face, inverse_affine(affine))
    assert mask[y0:y1, x0:x1].min() > 0.99  # the face box is fully covered by the paste
    assert psnr(pasted[y0:y1, x0:x1], image[y0:y1, x0:x1]) >= 30
    untouched = mask == 0
    np.testing.assert_array_equal(pasted[untouched], image[untouched])
