"""Image-quality metrics as customary in SR papers: PSNR and SSIM on the Y channel
(BT.601, [16, 235]) with ``crop`` border pixels dropped (crop = scale), NIQE on Y; each on
the whole image and on the non-face region (face boxes masked out).

Inputs are (H, W, 3) float RGB in [0, 1], quantised as saved (callers round to 8 bit).
SSIM is scikit-image's Gaussian-window SSIM (Wang et al. settings); the non-face value
averages its SSIM map over non-face pixels. LPIPS (whole image) runs only where the
registry's AlexNet is installed; FID/KID are not computed (see ``unavailable_metrics``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
from skimage.metrics import structural_similarity

from f2n.errors import ConfigError, InputImageError
from f2n.eval.niqe import (
    BLOCK,
    block_features,
    blocks_free_of,
    niqe,
    niqe_of_blocks,
    pristine_model,
)
from f2n.runtime.psnr import psnr

Box = Sequence[float]  # x0, y0, x1, y1

_SSIM_SIGMA = 1.5
_SSIM_PAD = (2 * int(3.5 * _SSIM_SIGMA + 0.5) + 1) // 2  # scikit-image's window half-width


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB in [0, 1] -> (H, W) float64 luma in [16, 235] (MATLAB ``rgb2ycbcr``)."""
    return 16.0 + rgb.astype(np.float64) @ np.array([65.481, 128.553, 24.966])


def face_box_mask(shape_hw: tuple[int, int], boxes_lq: Sequence[Box], *, scale: int = 4) -> np.ndarray:
    """(H, W) bool, True inside the LQ face boxes scaled by ``scale`` (outward to whole pixels)."""
    mask = np.zeros(shape_hw, dtype=bool)
    for x0, y0, x1, y1 in boxes_lq:
        c0, r0 = max(0, int(np.floor(x0 * scale))), max(0, int(np.floor(y0 * scale)))
        c1, r1 = min(shape_hw[1], int(np.ceil(x1 * scale))), min(shape_hw[0], int(np.ceil(y1 * scale)))
        mask[r0:r1, c0:c1] = True
    return mask


def _check_pair(out: np.ndarray, gt: np.ndarray, exclude: np.ndarray | None, crop: int) -> None:
    if out.shape != gt.shape or out.ndim != 3 or out.shape[2] != 3:
        raise InputImageError(f"metric inputs are {out.shape} and {gt.shape}, expected two equal (H, W, 3) images")
    if exclude is not None and exclude.shape != out.shape[:2]:
        raise InputImageError(f"metric mask is {exclude.shape}, expected {out.shape[:2]}")
    if crop < 0 or 2 * crop >= min(out.shape[:2]):
        raise ConfigError(f"border crop {crop} does not fit a {out.shape[1]}x{out.shape[0]} image")


def _crop(a: np.ndarray, crop: int) -> np.ndarray:
    return a[crop : a.shape[0] - crop, crop : a.shape[1] - crop] if crop else a


def psnr_y(out: np.ndarray, gt: np.ndarray, *, crop: int = 4, exclude: np.ndarray | None = None) -> float:
    """PSNR (dB, peak 255) of the Y channel; ``exclude``: (H, W) bool pixels left out."""
    _check_pair(out, gt, exclude, crop)
    return psnr(_luma(out, crop), _luma(gt, crop), peak=255.0, where=_kept(exclude, crop))


def ssim_y(out: np.ndarray, gt: np.ndarray, *, crop: int = 4, exclude: np.ndarray | None = None) -> float:
    """SSIM of the Y channel (11x11 Gaussian window, sigma 1.5), mean of the SSIM map over
    kept pixels away from the window's border (as scikit-image's own mean)."""
    _check_pair(out, gt, exclude, crop)
    return _ssim_mean(_ssim_map(_luma(out, crop), _luma(gt, crop)), _kept(exclude, crop))


def niqe_y(out: np.ndarray, *, crop: int = 4, exclude: np.ndarray | None = None) -> float:
    """NIQE of the Y channel (lower is better); NaN when fewer than two face-free 96 px blocks remain."""
    y = _luma(out, crop)
    if min(y.shape) < BLOCK:
        return float("nan")
    return niqe(y, exclude=None if exclude is None else _crop(exclude, crop))


# The metrics of one image share their inputs: each luma, the SSIM map and the NIQE block
# features are computed once and read by the whole-image and the non-face value alike.

def _luma(rgb: np.ndarray, crop: int) -> np.ndarray:
    return _crop(rgb_to_y(rgb), crop)


def _kept(exclude: np.ndarray | None, crop: int) -> np.ndarray | None:
    return None if exclude is None else ~_crop(exclude, crop)


def _ssim_map(y_out: np.ndarray, y_gt: np.ndarray) -> np.ndarray:
    _, ssim_map = structural_similarity(y_out, y_gt, data_range=255.0, gaussian_weights=True, sigma=_SSIM_SIGMA,
                                        use_sample_covariance=False, full=True)
    return ssim_map


def _ssim_mean(ssim_map: np.ndarray, keep: np.ndarray | None) -> float:
    keep = np.ones(ssim_map.shape, dtype=bool) if keep is None else keep
    inner = _crop(ssim_map, _SSIM_PAD)[_crop(keep, _SSIM_PAD)]
    return float(inner.mean()) if inner.size else float("nan")


def unavailable_metrics(lpips_problem: str | None) -> dict[str, str]:
    """Metrics left out of the table, with the reason."""
    reasons = {
        "fid": "not computed: needs Inception weights (none installed, no download) and hundreds of images",
        "kid": "not computed: needs Inception weights (none installed, no download); a handful of photos is too few",
        "lpips_nonface": "not computed: LPIPS is reported on the whole image only",
    }
    if lpips_problem is not None:
        reasons["lpips"] = f"skipped: {lpips_problem}"
    return reasons


def load_lpips() -> tuple[Callable[[np.ndarray, np.ndarray], float] | None, str | None]:
    """(LPIPS function, None) where the registry's AlexNet is installed, else (None, why not)."""
    import torch

    from f2n.errors import WeightsError
    from f2n.training.perceptual import build_lpips

    try:
        net = build_lpips().eval()
    except WeightsError as error:
        return None, str(error)

    def distance(out: np.ndarray, gt: np.ndarray) -> float:
        pair = [torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).permute(2, 0, 1)[None] * 2 - 1 for a in (out, gt)]
        with torch.no_grad():
            return float(net(*pair).mean())

    return distance, None


def niqe_problem() -> str | None:
    """None when NIQE can run here, else why not."""
    try:
        pristine_model()
    except ConfigError as error:
        return str(error)
    return None


def compute_metrics(out: np.ndarray, gt: np.ndarray, faces: np.ndarray | None, *, crop: int = 4, with_niqe: bool = True,
                    lpips: Callable[[np.ndarray, np.ndarray], float] | None = None) -> dict[str, float]:
    """The table's columns for one output: whole image and, given ``faces`` ((H, W) bool,
    True on the face boxes), the non-face region."""
    return metrics_table({"out": out}, gt, faces, crop=crop, with_niqe=with_niqe, lpips=lpips)["out"]


def metrics_table(outputs: Mapping[str, np.ndarray], gt: np.ndarray, faces: np.ndarray | None, *, crop: int = 4,
                  with_niqe: bool = True,
                  lpips: Callable[[np.ndarray, np.ndarray], float] | None = None) -> dict[str, dict[str, float]]:
    """``compute_metrics`` of every output (method -> row) of one photo; the ground truth's
    luma is computed once for all of them."""
    for out in outputs.values():
        _check_pair(out, gt, faces, crop)
    y_gt, keep = _luma(gt, crop), _kept(faces, crop)
    return {method: _row(out, gt, y_gt, keep, crop, with_niqe, lpips) for method, out in outputs.items()}


def _row(out: np.ndarray, gt: np.ndarray, y_gt: np.ndarray, keep: np.ndarray | None, crop: int, with_niqe: bool,
         lpips: Callable[[np.ndarray, np.ndarray], float] | None) -> dict[str, float]:
    y_out = _luma(out, crop)
    ssim_map = _ssim_map(y_out, y_gt)
    blocks = block_features(y_out) if with_niqe and min(y_out.shape) >= BLOCK else None
    row = {"psnr": psnr(y_out, y_gt, peak=255.0), "ssim": _ssim_mean(ssim_map, None)}
    if with_niqe:
        row["niqe"] = float("nan") if blocks is None else niqe_of_blocks(blocks)
    if lpips is not None:
        row["lpips"] = lpips(out, gt)
    if keep is not None:
        row["psnr_nonface"] = psnr(y_out, y_gt, peak=255.0, where=keep)
        row["ssim_nonface"] = _ssim_mean(ssim_map, keep)
        if with_niqe:
            row["niqe_nonface"] = float("nan") if blocks is None else niqe_of_blocks(blocks[blocks_free_of(~keep)])
    return row


def piqe_y(out: np.ndarray, *, crop: int = 4) -> float:
    """PIQE (Venkatanath et al. 2015; lower is better, 0-100) of the 8-bit luma, by pypiqe
    (MATLAB ``piqe``'s port): no trained model, so nothing to download."""
    from pypiqe import piqe

    y = np.clip(np.round(_luma(out, crop)), 0, 255).astype(np.float64)
    return float(piqe(y)[0])
