"""RetinaFace on real photos: faces where there are faces, none where there are none,
landmarks in the documented order, faces cut by the frame found thanks to padding."""

from pathlib import Path

import numpy as np
import pytest

from f2n.errors import InputImageError
from f2n.runtime.face.detect import RetinaFaceDetector
from f2n.runtime.images import read_image


@pytest.fixture(scope="module")
def detector() -> RetinaFaceDetector:
    return RetinaFaceDetector()


@pytest.mark.parametrize("name, expected_faces", [
    ("photos_hq/selfie_1.jpg", 1), ("photos_hq/selfie_2.jpg", 1), ("real_lq/000013p.png", 2),
    ("real_lq/building.png", 0), ("real_lq/frog.png", 0),
])
def test_faces_found_only_where_there_are_faces(detector, shared_data: Path, name: str, expected_faces: int) -> None:
    image = read_image(shared_data / name).rgb
    detections = detector(image)
    confident = detections.scores >= 0.9
    assert int(confident.sum()) == expected_faces
    height, width = image.shape[:2]
    boxes = detections.boxes
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= width).all() and (boxes[:, 1] >= 0).all() and (boxes[:, 3] <= height).all()
    assert (np.diff(detections.scores) <= 0).all()  # best first


def test_landmark_order_left_eye_right_eye_nose_mouth(detector, shared_data: Path) -> None:
    image = read_image(shared_data / "real_lq" / "000013p.png").rgb
    for (x0, y0, x1, y1), points in zip(detector(image).boxes, detector(image).landmarks):
        left_eye, right_eye, nose, mouth_left, mouth_right = points
        assert left_eye[0] < nose[0] < right_eye[0]
        assert mouth_left[0] < mouth_right[0]
        assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])
        assert (x0 <= points[:, 0]).all() and (points[:, 0] <= x1).all()


def test_padding_finds_a_face_cut_by_the_frame(shared_data: Path) -> None:
    image = read_image(shared_data / "real_lq" / "000013p.png").rgb
    whole = RetinaFaceDetector()(image)
    x0, y0, x1, y1 = whole.boxes[1].astype(int)  # the face on the left of the photo
    cut = image[max(0, y0 - 20):, x0 + (x1 - x0) // 4:]  # a quarter of the face is outside the frame
    padded = RetinaFaceDetector(pad_fraction=0.1)(cut)
    assert (padded.scores >= 0.9).sum() >= 1
    assert padded.boxes[:, 0].min() == 0.0  # the box is clipped to the frame


def test_shrinks_large_images_and_maps_back(shared_data: Path) -> None:
    image = read_image(shared_data / "photos_hq" / "selfie_1.jpg").rgb
    full = RetinaFaceDetector()(image)
    small = RetinaFaceDetector(max_side=600)(image)
    eye_distance = float(np.linalg.norm(full.landmarks[0, 1] - full.landmarks[0, 0]))  # about 215 px
    np.testing.assert_allclose(small.landmarks[0], full.landmarks[0], atol=0.1 * eye_distance)


def test_wrong_shape_is_refused(detector) -> None:
    with pytest.raises(InputImageError, match=r"\(H, W, 3\)"):
        detector(np.zeros((10, 10)))


@pytest.mark.slow  # two ResNet-50 builds: about 5 s idle, 18 s on the shared 2-core machine
def test_resnet50_option_decodes_like_facexlib(shared_data: Path, tmp_path: Path) -> None:
    """facexlib's ResNet-50 RetinaFace (random weights in its file layout, 'module.' prefixed):
    the best candidate equals what facexlib's own detect_faces makes of the same network."""
    import warnings

    import torch
    from facexlib.detection.retinaface import RetinaFace

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        reference = RetinaFace(network_name="resnet50", half=False, device=torch.device("cpu")).eval()
        for head in reference.ClassHead:  # spread the random scores so that the best candidate is unique
            head.conv1x1.weight.data *= 50
    torch.save({f"module.{key}": value for key, value in reference.state_dict().items()}, tmp_path / "r50.pth")
    detector = RetinaFaceDetector(resnet50_weights=tmp_path / "r50.pth", min_score=0.0, pad_fraction=0.0)
    assert detector.name == "retinaface-resnet50"
    image = read_image(shared_data / "real_lq" / "Lincoln.png").rgb[16:144, 16:144]
    ours = detector(image)
    pixels = np.round(image * 255).astype(np.uint8)
    with torch.inference_mode():
        theirs = reference.detect_faces(pixels[..., ::-1].copy(), conf_threshold=0.0)
    best = theirs[np.argmax(theirs[:, 4])]
    assert ours.scores[0] == pytest.approx(best[4], abs=1e-4)
    box = best[:4].copy()
    box[0::2], box[1::2] = box[0::2].clip(0, image.shape[1]), box[1::2].clip(0, image.shape[0])
    np.testing.assert_allclose(ours.boxes[0], box, atol=1e-2)
    np.testing.assert_allclose(ours.landmarks[0], best[5:].reshape(5, 2), atol=1e-2)
