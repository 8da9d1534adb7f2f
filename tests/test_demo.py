"""f2n-adapt-and-run --demo, end to end with a tiny network (the real-weights demo is
the README's command; it takes minutes on a CPU)."""

from pathlib import Path

import numpy as np
from click.testing import CliRunner

from f2n.runtime import cli
from f2n.eval.demo import PICTURE_NAME, ZOOM, ZOOM_BOX, comparison_picture, demo_pair
from f2n.runtime.psnr import psnr
from f2n.runtime.images import read_image


def test_demo_pair_is_fixed_and_degraded() -> None:
    gt, lq = demo_pair()
    again_gt, again_lq = demo_pair()
    assert gt.shape == (256, 256, 3) and lq.shape == (64, 64, 3)
    np.testing.assert_array_equal(lq, again_lq)
    upscaled = np.kron(lq, np.ones((4, 4, 1), np.float32))
    assert 15 < psnr(upscaled, gt) < 30  # degraded, but the same picture


def test_demo_prints_psnrs_and_niqe_and_writes_the_comparison(tiny_weights: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.command, ["--demo", "--checkpoint", str(tiny_weights), "--steps", "10",
                                              "--lr", "0.01", "--optimizer", "adam", "--out", str(tmp_path)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = {line[:40].strip(): [float(v) for v in line[40:].split()] for line in result.output.splitlines()
            if line[:40].strip() in ("bicubic", "base network", "adapted (oracle prior, upper bound)")}
    assert len(rows) == 3 and all(len(v) == 4 for v in rows.values()), result.output  # 3 PSNRs and NIQE
    assert rows["adapted (oracle prior, upper bound)"][0] > rows["base network"][0]
    assert rows["bicubic"][3] != rows["base network"][3]  # NIQE of each image, not one number
    assert "adapted beats base" in result.output
    assert "adapted (oracle-restored, realistic)" in result.output  # the realistic prior beside the oracle
    picture = read_image(tmp_path / PICTURE_NAME).rgb
    gt, _ = demo_pair()
    assert picture.shape[1] == 4 * gt.shape[1] + 3 * 4  # bicubic | base | adapted | ground truth
    # the ground truth's column holds the ground truth (below the label row)
    column = picture[20:20 + gt.shape[0], 3 * (gt.shape[1] + 4):]
    assert np.abs(column - gt)[2:-2, 2:-2].mean() < 0.01


def test_comparison_picture_zooms_the_same_crop_in_every_column() -> None:
    gt, _ = demo_pair()
    picture = comparison_picture({"a": gt, "b": 1 - gt}).astype(np.float32) / 255
    crop_top = 20 + gt.shape[0]
    y0, y1, x0, x1 = ZOOM_BOX
    zoomed = picture[crop_top:crop_top + (y1 - y0) * ZOOM, : (x1 - x0) * ZOOM]
    expected = gt[y0:y1, x0:x1].repeat(ZOOM, axis=0).repeat(ZOOM, axis=1)
    assert np.abs(zoomed - expected).max() < 1 / 255 + 1e-6
