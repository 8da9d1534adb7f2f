"""LQ patches of the photo away from its faces: what the inner loop's teacher term and the
whole-photo guard look at (hair, fabric, background), since face pairs cannot show what
adaptation does to the rest of the photo."""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

Box = Sequence[float]  # x0, y0, x1, y1, LQ pixels
FACE_MARGIN = 0.25  # of a face box's side, added on every side: hair and neck count as face
CANDIDATES = 64  # random positions tried per wanted patch
# The whole-photo guard looks at the whole LQ photo up to this many pixels: two passes over 96²
# px cost about a third of the default inner loop (10 steps of forward and backward over 6 pairs
# of 16², plus the held-out pairs: ~52k pixel-passes); larger photos are sampled by GUARD_PATCHES
# patches of GUARD_SIZE px (two passes over 4096 px: ~16 %), whatever their size.
WHOLE_PHOTO_PIXELS = 96 * 96
GUARD_SIZE = 32
GUARD_PATCHES = 4


@dataclass(frozen=True)
class TextureView:
    """What the whole-photo guard compares f(θ′) and f(θ) on: LQ images and, per LQ pixel, whether
    it counts (not a face); the network's output is weighted by ``keep`` resized to its size."""

    lq: torch.Tensor  # (K, 3, h, w)
    keep: torch.Tensor | None = None  # (K, 1, h, w) in {0, 1}; None: every pixel counts

    @property
    def pixels(self) -> int:
        return int(self.keep.sum()) if self.keep is not None else self.lq.shape[0] * self.lq.shape[2] * self.lq.shape[3]


def texture_view(rgb: np.ndarray, face_boxes: Sequence[Box], *, seed: int) -> TextureView | None:
    """The guard's view of ``rgb`` ((H, W, 3) float32 LQ): the whole photo with its faces (grown by
    ``FACE_MARGIN``) masked out when it has at most ``WHOLE_PHOTO_PIXELS`` pixels, else
    ``GUARD_PATCHES`` non-face patches of ``GUARD_SIZE`` px (16 px when none fits); None when
    no non-face pixel is left."""
    height, width = rgb.shape[:2]
    if height * width <= WHOLE_PHOTO_PIXELS:
        keep = np.ones((height, width), dtype=np.float32)
        for x0, y0, x1, y1 in (_grow(box) for box in face_boxes):
            keep[max(0, int(np.floor(y0))):max(0, int(np.ceil(y1))), max(0, int(np.floor(x0))):max(0, int(np.ceil(x1)))] = 0
        if not keep.any():
            return None
        lq = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32))[None]
        return TextureView(lq, torch.from_numpy(keep)[None, None])
    for size in (GUARD_SIZE, GUARD_SIZE // 2):
        patches = nonface_patches(rgb, face_boxes, count=GUARD_PATCHES, size=size, seed=seed)
        if patches is not None:
            return TextureView(patches)
    return None


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
