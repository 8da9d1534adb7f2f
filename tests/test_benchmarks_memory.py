"""The memory stage's parts: its photo really has four usable faces, and the peak it reads is the
child run's own (a larger photo peaks higher by at least its x4 output canvas)."""

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from f2n.benchmarks.memory import FACES, PHOTO_HW, four_face_photo, peak_rss_mib
from f2n.nets import RRDBNet
from f2n.runtime.face.detect import RetinaFaceDetector
from f2n.runtime.face.stage import FaceStageConfig, select_faces
from f2n.runtime.images import read_image, write_image


def test_the_memory_photo_has_four_usable_faces(tmp_path: Path) -> None:
    image = read_image(four_face_photo(tmp_path / "photo.png")).rgb
    assert image.shape[:2] == PHOTO_HW
    reports = select_faces(RetinaFaceDetector()(image), image.shape[:2], FaceStageConfig())
    assert sum(report.used for report in reports) == FACES


def test_peak_rss_is_the_child_runs_and_grows_with_the_photo(tmp_path: Path) -> None:
    torch.manual_seed(0)
    checkpoint = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in RRDBNet(num_block=1, num_feat=8, num_grow_ch=4).state_dict().items()},
              str(checkpoint))
    peaks = {}
    for side in (16, 512):
        photo = tmp_path / f"photo{side}.png"
        write_image(photo, np.random.default_rng(0).random((side, side, 3), np.float32))
        peaks[side] = peak_rss_mib([str(photo), "--out", str(tmp_path / f"sr{side}.png"), "--checkpoint",
                                    str(checkpoint), "--no-adapt", "--no-progress"], threads=1)
    # at least the larger photo's x4 output as 8-bit pixels (12 MiB): since issue 27 the tiles are
    # blended in place and encoded band by band, so no whole float32 copy (48 MiB) need exist
    canvas_mib = (4 * 512) ** 2 * 3 / 2**20
    assert peaks[512] - peaks[16] > canvas_mib, peaks
