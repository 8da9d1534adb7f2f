"""Metrics: Y-channel PSNR/SSIM agree with scikit-image, the face mask is exact, NIQE ranks noise worse."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from f2n.eval.metrics import (
    compute_metrics,
    face_box_mask,
    metrics_table,
    niqe_y,
    psnr_y,
    rgb_to_y,
    ssim_y,
)
from f2n.eval.niqe import niqe


@pytest.fixture(scope="module")
def pair():
    gt = skimage.data.astronaut()[:160, 100:276].astype(np.float32) / 255
    noisy = np.clip(gt + np.random.default_rng(0).normal(0, 0.04, gt.shape), 0, 1)
    return np.round(noisy * 255).astype(np.float32) / 255, gt


def test_psnr_and_ssim_agree_with_scikit_image(pair):
    out, gt = pair
    y_out, y_gt = rgb2ycbcr(out)[4:-4, 4:-4, 0], rgb2ycbcr(gt)[4:-4, 4:-4, 0]
    assert psnr_y(out, gt, crop=4) == pytest.approx(peak_signal_noise_ratio(y_gt, y_out, data_range=255), abs=1e-6)
    reference = structural_similarity(y_gt, y_out, data_range=255, gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=False)
    assert ssim_y(out, gt, crop=4) == pytest.approx(reference, abs=1e-6)
    np.testing.assert_allclose(rgb_to_y(gt), rgb2ycbcr(gt)[..., 0], atol=1e-4)  # skimage: float32


def test_identical_images_are_perfect(pair):
    _, gt = pair
    assert psnr_y(gt, gt) == float("inf")
    assert ssim_y(gt, gt) == pytest.approx(1.0)


def test_face_mask_covers_exactly_the_scaled_boxes():
    mask = face_box_mask((60, 80), [(2.5, 3, 10, 12), (18, 10, 30, 40)], scale=4)
    expected = np.zeros((60, 80), bool)
    expected[12:48, 10:40] = True  # x 2.5..10 -> 10..40, y 3..12 -> 12..48
    expected[40:60, 72:80] = True  # clipped at the image border
    np.testing.assert_array_equal(mask, expected)


def test_nonface_metrics_ignore_exactly_the_masked_pixels(pair):
    out, gt = pair
    faces = face_box_mask(gt.shape[:2], [(10, 8, 25, 20)], scale=4)
    spoiled = out.copy()
    spoiled[faces] = 1.0 - spoiled[faces]  # ruin the faces only
    assert psnr_y(spoiled, gt, exclude=faces) == pytest.approx(psnr_y(out, gt, exclude=faces), abs=1e-9)
    assert psnr_y(spoiled, gt) < psnr_y(out, gt) - 3
    # Outside the mask the two images are the same pixels: the non-face PSNR is their direct PSNR.
    keep = ~faces[4:-4, 4:-4]
    direct = peak_signal_noise_ratio(rgb_to_y(gt)[4:-4, 4:-4][keep], rgb_to_y(out)[4:-4, 4:-4][keep], data_range=255)
    assert psnr_y(out, gt, exclude=faces) == pytest.approx(direct, abs=1e-6)
    row = compute_metrics(spoiled, gt, faces)
    assert row["ssim_nonface"] > row["ssim"]


def test_niqe_ranks_a_clean_natural_image_better_than_its_noisy_version(shared_data):
    rgb = np.asarray(Image.open(sorted((shared_data / "natural_hq").glob("*.png"))[0]).convert("RGB"))
    clean = rgb.astype(np.float32) / 255
    noisy = np.clip(clean + np.random.default_rng(1).normal(0, 0.05, clean.shape), 0, 1)
    clean_score, noisy_score = niqe_y(clean), niqe_y(noisy)
    assert 1.0 < clean_score < 10.0  # the range published NIQE gives for sharp natural images
    assert noisy_score > clean_score + 1.0


def test_niqe_exclusion_drops_blocks_and_rejects_small_inputs():
    rng = np.random.default_rng(0)
    gray = np.clip(128 + 40 * rng.standard_normal((288, 288)), 0, 255)
    everything = np.ones(gray.shape, bool)
    assert np.isnan(niqe(gray, exclude=everything))
    one_block_free = everything.copy()
    one_block_free[:192, :192] = False  # 4 of 9 blocks left
    assert np.isfinite(niqe(gray, exclude=one_block_free))
    assert np.isnan(niqe_y(np.zeros((90, 300, 3), np.float32)))


NIQE_REFERENCE = Path(__file__).parent / "data" / "niqe_basicsr.json"  # how it was made: its "note"


@pytest.fixture(scope="module")
def astronaut_noisy() -> tuple[np.ndarray, np.ndarray]:
    """The inputs of tests/data/niqe_basicsr.json: (noisy 8-bit, clean) float RGB."""
    gt = skimage.data.astronaut()[:320, 96:416].astype(np.float32) / 255
    out = np.round(np.clip(gt + np.random.default_rng(0).normal(0, 0.04, gt.shape), 0, 1) * 255).astype(np.float32) / 255
    reference = json.loads(NIQE_REFERENCE.read_text())
    assert hashlib.sha256(np.round(out * 255).astype(np.uint8).tobytes()).hexdigest() == reference["noisy_sha256"]
    return out, gt


def test_shared_inputs_give_the_same_numbers_as_each_metric_alone(astronaut_noisy) -> None:
    """metrics_table computes each luma, SSIM map and set of NIQE block features once per
    image; every value must equal the metric computed on its own."""
    out, gt = astronaut_noisy
    faces = face_box_mask(gt.shape[:2], [(40, 8, 70, 45)], scale=4)
    table = metrics_table({"noisy": out, "gt": gt}, gt, faces)
    alone = {"psnr": psnr_y(out, gt), "ssim": ssim_y(out, gt), "niqe": niqe_y(out),
             "psnr_nonface": psnr_y(out, gt, exclude=faces), "ssim_nonface": ssim_y(out, gt, exclude=faces),
             "niqe_nonface": niqe_y(out, exclude=faces)}
    assert table["noisy"] == alone
    assert compute_metrics(gt, gt, faces) == table["gt"] and table["gt"]["psnr"] == float("inf")
    assert np.isfinite(table["noisy"]["niqe_nonface"]) and table["noisy"]["niqe_nonface"] != table["noisy"]["niqe"]


def test_the_table_agrees_with_scikit_image(astronaut_noisy) -> None:
    """PSNR and SSIM, whole and non-face, against scikit-image on the MATLAB luma."""
    out, gt = astronaut_noisy
    faces = face_box_mask(gt.shape[:2], [(40, 8, 70, 45)], scale=4)
    row = metrics_table({"noisy": out}, gt, faces, with_niqe=False)["noisy"]
    y_out, y_gt = (rgb2ycbcr(a)[4:-4, 4:-4, 0].astype(np.float64) for a in (out, gt))
    keep = ~faces[4:-4, 4:-4]
    assert row["psnr"] == pytest.approx(peak_signal_noise_ratio(y_gt, y_out, data_range=255), abs=1e-3)
    assert row["psnr_nonface"] == pytest.approx(peak_signal_noise_ratio(y_gt[keep], y_out[keep], data_range=255),
                                                abs=1e-3)
    mean, ssim_map = structural_similarity(y_gt, y_out, data_range=255, gaussian_weights=True, sigma=1.5,
                                           use_sample_covariance=False, full=True)
    assert row["ssim"] == pytest.approx(mean, abs=1e-5)
    border = 5  # scikit-image's own mean leaves out the window's half-width (11 // 2) at the border
    inner = (slice(border, -border),) * 2
    assert row["ssim_nonface"] == pytest.approx(float(ssim_map[inner][keep[inner]].mean()), abs=1e-5)


def test_niqe_agrees_with_basicsr(astronaut_noisy) -> None:
    """Against basicsr's NIQE (a fixture made once, tests/data/niqe_basicsr.json). The two
    differ only in the half-size resize (Pillow's bicubic here, MATLAB's imresize there):
    within 0.5 % on the whole image; the non-face value, leaving out the blocks of the rows
    from 192 on, matches basicsr on the image cut there within 1.5 % (the cut changes the
    resize near it)."""
    out, gt = astronaut_noisy
    reference = json.loads(NIQE_REFERENCE.read_text())["niqe"]
    below = np.zeros(gt.shape[:2], bool)
    below[4 + 192 :, :] = True
    for name, image in (("clean", gt), ("noisy", out)):
        assert niqe_y(image) == pytest.approx(reference[name]["whole"], rel=5e-3)
        assert niqe_y(image, exclude=below) == pytest.approx(reference[name]["top_192_rows"], rel=1.5e-2)


def test_the_one_psnr_agrees_with_scikit_image_with_a_mask_a_peak_and_its_edge_cases() -> None:
    from f2n.runtime.psnr import psnr

    rng = np.random.default_rng(3)
    gt = rng.random((24, 20, 3)).astype(np.float32)
    out = np.clip(gt + rng.normal(0, 0.05, gt.shape), 0, 1).astype(np.float32)
    assert psnr(out, gt) == pytest.approx(peak_signal_noise_ratio(gt, out, data_range=1.0), abs=1e-5)
    assert psnr(out * 255, gt * 255, peak=255.0) == pytest.approx(psnr(out, gt), abs=1e-6)
    keep = np.zeros(gt.shape[:2], bool)
    keep[4:12, 2:9] = True
    spoiled = out.copy()
    spoiled[~keep] = 0  # outside the mask: must not count
    assert psnr(spoiled, gt, where=keep) == pytest.approx(
        peak_signal_noise_ratio(gt[keep], out[keep], data_range=1.0), abs=1e-5)
    assert psnr(gt, gt) == float("inf") and np.isnan(psnr(out, gt, where=np.zeros_like(keep)))


def test_psnr_is_written_once_in_the_package() -> None:
    """The engine probe, the demo and f2n-eval once had a PSNR each (with different edge cases):
    a log10 anywhere but f2n.runtime.psnr is another copy."""
    import ast

    root = Path(__file__).resolve().parents[1]
    folders = ("core", "runtime", "training", "export", "cpp_ext", "eval", "benchmarks", "app", "comfyui", "scripts")
    copies = []
    for path in (p for folder in folders for p in (root / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            func = node.func if isinstance(node, ast.Call) else None
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name == "log10" and path.relative_to(root) != Path("runtime/psnr.py"):
                copies.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not copies, f"PSNR computed outside f2n.runtime.psnr: {copies}"
