"""Unsharp masking (USM) of training targets, as ReDegNet's data pipeline sharpens the HQ natural
crop that F2N-ESRGAN learns to reproduce (``natural_real_sq_restore``).

The official pipeline draws the strength, the blur size and the threshold per image (around
Real-ESRGAN's fixed 0.5 / 51 / 10): sharpened = I + w·(I − blur(I)) where |I − blur(I)| exceeds the
threshold, blended through a blurred mask so the edit has no hard edges."""

import cv2
import numpy as np
import torch

WEIGHT_TENTHS = (3, 7)  # w ∈ {0.3, …, 0.6}: numpy's half-open integer ranges, as the official draws
RADIUS = (40, 60)  # Gaussian kernel side, made odd
THRESHOLD = (7, 15)  # on the 0–255 scale


def usm_sharpen(image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """(3, H, W) in [0, 1] → its sharpened copy, clipped to [0, 1] where it was sharpened."""
    weight = int(rng.integers(*WEIGHT_TENTHS)) / 10
    side = int(rng.integers(*RADIUS)) | 1
    threshold = int(rng.integers(*THRESHOLD))
    pixels = image.permute(1, 2, 0).numpy().astype(np.float32)
    residual = pixels - cv2.GaussianBlur(pixels, (side, side), 0)
    mask = cv2.GaussianBlur((np.abs(residual) * 255 > threshold).astype(np.float32), (side, side), 0)
    sharpened = np.clip(pixels + weight * residual, 0, 1)
    blended = mask * sharpened + (1 - mask) * pixels
    return torch.from_numpy(np.ascontiguousarray(blended)).permute(2, 0, 1)
