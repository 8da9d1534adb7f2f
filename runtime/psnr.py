"""PSNR, written once: the engine probe's quality check, the demo's regions and f2n-eval's
Y-channel metrics all call this one."""

import math

import numpy as np


def psnr(a: np.ndarray, b: np.ndarray, *, peak: float = 1.0, where: np.ndarray | None = None) -> float:
    """10·log10(peak² / MSE) in dB of ``a`` against ``b`` (computed in float64) over the pixels
    ``where`` keeps (a boolean mask over their leading axes; all without it). inf when the two
    are equal there, NaN when ``where`` keeps no pixel."""
    err = (np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2
    if where is not None:
        if not where.any():
            return math.nan
        err = err[where]
    mse = float(err.mean())
    return math.inf if mse == 0 else 10 * math.log10(peak ** 2 / mse)
