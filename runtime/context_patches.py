"""LQ patches of the photo away from its faces: what the inner loop's teacher term and the
whole-photo guard look at (hair, fabric, background), since face pairs cannot show what
adaptation does to the rest of the photo."""

from collections.abc import Sequence

import numpy as np
import torch

Box = Sequence[float]  # x0, y0, x1, y1, LQ pixels
FACE_MARGIN = 0.25  # of a face box's side, added on every side: hair and neck count as face
CANDIDATES = 64  # random positions tried per wanted patch


def nonface_patches(rgb: np.ndarray, face_boxes: Sequence[Box], *, count: int, size: int,
                    seed: int) -> torch.Tensor | None:
    """Up to ``count`` seeded random ``size``² LQ patches of ``rgb`` ((H, W, 3) float32) that
    overlap no face box (grown by ``FACE_MARGIN``), as (K, 3, size, size) float32; None when
    none fits. Patches may overlap each other."""
    height, width = rgb.shape[:2]
    if count < 1 or height < size or width < size:
        return None
    grown = np.array([_grow(box) for box in face_boxes], dtype=np.float64).reshape(-1, 4)
    rng = np.random.default_rng(seed)
    ys = rng.integers(0, height - size + 1, CANDIDATES * count)
    xs = rng.integers(0, width - size + 1, CANDIDATES * count)
    free = np.ones(len(xs), dtype=bool)
    for x0, y0, x1, y1 in grown:
        free &= (xs + size <= x0) | (xs >= x1) | (ys + size <= y0) | (ys >= y1)
    picked = np.flatnonzero(free)[:count]
    if len(picked) == 0:
        return None
    patches = np.stack([rgb[ys[i]:ys[i] + size, xs[i]:xs[i] + size] for i in picked])
    return torch.from_numpy(np.ascontiguousarray(patches.transpose(0, 3, 1, 2), dtype=np.float32))


def _grow(box: Box) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = box
    dx, dy = FACE_MARGIN * (x1 - x0), FACE_MARGIN * (y1 - y0)
    return x0 - dx, y0 - dy, x1 + dx, y1 + dy
