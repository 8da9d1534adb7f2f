"""--save-debug pictures: every file is written, and the overview shows boxes where the faces are."""

from pathlib import Path

import numpy as np

from f2n.runtime.face.debug_images import save_debug
from f2n.runtime.face.detect import RetinaFaceDetector
from f2n.runtime.face.patches import PatchConfig
from f2n.runtime.face.prior import CallablePrior
from f2n.runtime.face.stage import FaceStageConfig, run_face_stage
from f2n.runtime.images import read_image


def test_debug_pictures_of_a_photo_with_two_faces(shared_data: Path, tmp_path: Path) -> None:
    image = read_image(shared_data / "real_lq" / "000013p.png").rgb
    result = run_face_stage(image, detector=RetinaFaceDetector(), prior=CallablePrior(lambda f: 1 - f, "negative"),
                            config=FaceStageConfig(max_faces=1, patches=PatchConfig(count=3)))
    written = save_debug(result, image, tmp_path / "debug")
    names = {path.name for path in written}
    assert names == {"face_0_crop.png", "face_1_crop.png", "face_0_aligned.png", "face_0_restored.png",
                     "restored_x4.png", "paste_mask_x4.png", "patch_weights.png", "faces_and_patches.png"}
    assert all(path.is_file() for path in written)
    restored = read_image(tmp_path / "debug" / "face_0_restored.png").rgb
    aligned = read_image(tmp_path / "debug" / "face_0_aligned.png").rgb
    np.testing.assert_allclose(restored, 1 - aligned, atol=2 / 255)
    overview = read_image(tmp_path / "debug" / "faces_and_patches.png").rgb
    factor = overview.shape[0] // image.shape[0]
    assert factor == 2  # a 315 px photo is enlarged to at least 512 px
    (used,) = [face for face in result.faces if face.used]
    (rejected,) = [face for face in result.faces if not face.used]
    x0, y0, x1, _ = used.box
    green = overview[y0 * factor, (x0 + x1) // 2 * factor]
    assert green[1] > 0.8 and green[0] < 0.2
    x0, y0, x1, _ = rejected.box
    red = overview[y0 * factor, (x0 + x1) // 2 * factor]
    assert red[0] > 0.8 and red[1] < 0.2


def test_debug_of_a_photo_without_faces_is_just_the_overview(shared_data: Path, tmp_path: Path) -> None:
    image = read_image(shared_data / "real_lq" / "building.png").rgb
    result = run_face_stage(image, detector=RetinaFaceDetector(), prior=CallablePrior(lambda f: f, "identity"))
    assert [path.name for path in save_debug(result, image, tmp_path)] == ["faces_and_patches.png"]
