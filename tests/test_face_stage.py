"""The face stage end to end with real detection: exact LQ/x4 pair geometry through an
oracle prior, explicit no-face results, reasons for rejected faces, MaskNet weights."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from f2n.nets.masknet import MaskNet
from f2n.runtime.psnr import psnr
from f2n.runtime.face.detect import RetinaFaceDetector
from f2n.runtime.face.patches import PatchConfig
from f2n.runtime.face.prior import CallablePrior, OraclePrior
from f2n.runtime.face.regions import full_canvas
from f2n.runtime.face.stage import MASK_ONES, FaceStageConfig, run_face_stage
from f2n.runtime.images import read_image


@pytest.fixture(scope="module")
def detector() -> RetinaFaceDetector:
    return RetinaFaceDetector()


@pytest.fixture(scope="module")
def synthetic_pair(shared_data: Path) -> tuple[np.ndarray, np.ndarray]:
    """(LQ, HQ): a real photo as HQ (600 px) and its bicubic x4 downscale as LQ."""
    hq = Image.open(shared_data / "photos_hq" / "selfie_2.jpg").convert("RGB").resize((600, 600), Image.LANCZOS)
    lq = hq.resize((150, 150), Image.BICUBIC)
    return np.asarray(lq, np.float32) / 255, np.asarray(hq, np.float32) / 255


def _bicubic_down(patches: np.ndarray) -> np.ndarray:
    """(N, 64, 64, 3) -> (N, 16, 16, 3) with Pillow's bicubic, as the LQ was made."""
    return np.stack([np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(patch[..., c]), "F")
                                          .resize((16, 16), Image.BICUBIC)) for c in range(3)], axis=-1)
                     for patch in patches])



def test_oracle_pairs_are_the_same_spot_at_both_scales(detector, synthetic_pair) -> None:
    lq, hq = synthetic_pair
    result = run_face_stage(lq, detector=detector, prior=OraclePrior(hq), seed=3)
    assert result.patches is not None and len(result.patches) == 16
    assert result.mask_source == MASK_ONES
    lq_patches = result.patches.lq.permute(0, 2, 3, 1).numpy()
    targets = result.patches.target.permute(0, 2, 3, 1).numpy()
    assert psnr(_bicubic_down(targets), lq_patches) > 40  # measured 55 dB
    # Negative control: the x4 patch one LQ pixel to the right no longer matches.
    x0, y0, x1, y1 = result.patch_boxes[0]
    shifted = full_canvas(lq, result.regions, 4)[4 * y0:4 * y1, 4 * x0 + 4:4 * x1 + 4]
    assert psnr(_bicubic_down(shifted[None]), lq_patches[:1]) < 38  # measured 33 dB
    # Patches lie inside the used face's box.
    (face,) = [f for f in result.faces if f.used]
    bx0, by0, bx1, by1 = face.box
    assert (result.patch_boxes[:, 0] >= bx0).all() and (result.patch_boxes[:, 2] <= bx1).all()
    assert (result.patch_boxes[:, 1] >= by0).all() and (result.patch_boxes[:, 3] <= by1).all()
    assert face.num_patches == 16
    assert set(result.timings) == {"detect", "align", "restore", "paste", "patches", "mask"}


def test_same_seed_same_pairs_other_seed_other_pairs(detector, synthetic_pair) -> None:
    lq, hq = synthetic_pair
    runs = [run_face_stage(lq, detector=detector, prior=OraclePrior(hq), seed=seed).patch_boxes for seed in (1, 1, 2)]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_photo_without_faces_gives_an_explicit_result(detector, shared_data: Path) -> None:
    image = read_image(shared_data / "real_lq" / "frog.png").rgb
    result = run_face_stage(image, detector=detector, prior=CallablePrior(lambda faces: faces, "identity"))
    assert result.patches is None and result.no_faces_reason == "no face detected"
    assert result.faces == () and result.regions == ()


def test_rejected_faces_say_why(detector, shared_data: Path) -> None:
    image = read_image(shared_data / "real_lq" / "000013p.png").rgb
    prior = CallablePrior(lambda faces: faces, "identity")
    too_small = run_face_stage(image, detector=detector, prior=prior, config=FaceStageConfig(min_face_size=500))
    assert too_small.patches is None and len(too_small.faces) == 2
    assert all("< min_face_size 500 px" in face.reason and not face.used for face in too_small.faces)
    assert too_small.no_faces_reason.startswith("all 2 detected faces were rejected")
    one = run_face_stage(image, detector=detector, prior=prior,
                         config=FaceStageConfig(max_faces=1, patches=PatchConfig(count=10)))
    assert [face.used for face in one.faces] == [True, False]
    assert "beyond max_faces=1" in one.faces[1].reason
    assert len(one.patches) == 10 and one.faces[0].num_patches == 10


def test_masknet_weights_the_pairs(detector, shared_data: Path) -> None:
    image = read_image(shared_data / "real_lq" / "000013p.png").rgb
    torch.manual_seed(0)
    masknet = MaskNet(num_feat=8, num_layers=2)
    result = run_face_stage(image, detector=detector, prior=CallablePrior(lambda faces: faces, "identity"),
                            masknet=masknet, config=FaceStageConfig(patches=PatchConfig(count=4)))
    patches = result.patches
    assert result.mask_source == "masknet" and len(patches) == 8
    assert patches.weight.shape == (8, 1, 64, 64) and (patches.weight >= 0).all()
    upsampled = torch.nn.functional.interpolate(patches.lq, scale_factor=4, mode="bicubic", align_corners=False)
    with torch.no_grad():
        expected = masknet(upsampled.clamp(0, 1), patches.target)
    torch.testing.assert_close(patches.weight, expected)
