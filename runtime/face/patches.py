"""Training pairs from face boxes: pure functions on arrays.

A pair is an LQ patch lq[y:y+p, x:x+p] and the x4 patch target[4y:4y+4p, 4x:4x+4p], so the
two cover exactly the same area of the photo. Positions are drawn uniformly inside the
face box (LQ pixels) by a seeded numpy Generator.

A box narrower or shorter than a patch gives one pair: the box itself, padded up to the
patch size by mirror reflection (``numpy.pad`` "symmetric"), with ``valid`` zero on the
padding. The box is not resized, because resizing would change the degradation that the
adaptation is meant to learn, and the padding is kept out of the loss through ``valid``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from f2n.errors import ConfigError
from f2n.runtime.types import SCALE


@dataclass(frozen=True)
class PatchConfig:
    """``count`` pairs from each used face, or, with ``per_image``, that many pairs in
    total for the photo, spread over its faces (:func:`counts_per_face`)."""

    lq_size: int = 16  # LQ patch side; the target side is scale * lq_size
    scale: int = SCALE
    count: int = 16  # pairs per face
    per_image: int | None = None  # pairs per photo, replacing `count` when set

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ConfigError(f"patches per face must be >= 1, got {self.count}")
        if self.per_image is not None and self.per_image < 1:
            raise ConfigError(f"patches per image must be >= 1, got {self.per_image}")
        if self.lq_size < 1 or self.scale < 1:
            raise ConfigError(f"patch size and scale must be >= 1, got {self.lq_size}, {self.scale}")


@dataclass(frozen=True)
class PatchPairs:
    """``lq`` (N, p, p, 3), ``target`` (N, sp, sp, 3), ``valid`` (N, sp, sp) float32 arrays;
    ``boxes`` (N, 4) int LQ x0, y0, x1, y1 of each patch's true (unpadded) extent;
    ``face_index`` (N,) which face each pair came from."""

    lq: np.ndarray
    target: np.ndarray
    valid: np.ndarray
    boxes: np.ndarray
    face_index: np.ndarray


def counts_per_face(face_boxes: Sequence[tuple[int, int, int, int]], config: PatchConfig) -> list[int]:
    """Pairs to draw from each face box (LQ x0, y0, x1, y1).

    Per face: ``count`` each. Per image (``per_image`` = N): every face gets one pair
    (when N is smaller than the number of faces, the N largest faces, the earlier on a
    tie); the rest goes to the faces that can give more than one pair — a box at least
    one patch wide and high — in proportion to their box area, rounded by largest
    remainder (ties to the earlier face). A face smaller than a patch gives exactly one
    pair (its padded box, :func:`sample_patch_boxes`), so N is reached whenever some face
    is patch-sized, and otherwise the photo gives one pair per face. Deterministic: the
    seed only moves the patches inside each box."""
    if config.per_image is None:
        return [config.count] * len(face_boxes)
    areas = np.array([max(x1 - x0, 0) * max(y1 - y0, 0) for x0, y0, x1, y1 in face_boxes], dtype=np.float64)
    counts = np.zeros(len(face_boxes), dtype=np.int64)
    counts[np.argsort(-areas, kind="stable")[: config.per_image]] = 1
    fits = np.array([x1 - x0 >= config.lq_size and y1 - y0 >= config.lq_size for x0, y0, x1, y1 in face_boxes])
    rest = config.per_image - int(counts.sum())
    if rest > 0 and fits.any():
        quota = rest * np.where(fits, areas, 0.0) / areas[fits].sum()
        extra = np.floor(quota).astype(np.int64)
        leftover = rest - int(extra.sum())
        extra[np.argsort(-(quota - extra), kind="stable")[:leftover]] += 1
        counts += extra
    return counts.tolist()


def sample_patch_boxes(box: tuple[int, int, int, int], count: int, lq_size: int,
                       rng: np.random.Generator) -> np.ndarray:
    """(n, 4) int patch boxes x0, y0, x1, y1 inside ``box`` (LQ pixels): ``count`` random ones,
    or the box itself once when it is smaller than a patch in either direction."""
    x0, y0, x1, y1 = box
    if x1 - x0 < lq_size or y1 - y0 < lq_size:
        return np.array([[x0, y0, min(x1, x0 + lq_size), min(y1, y0 + lq_size)]], dtype=np.int64)
    xs = rng.integers(x0, x1 - lq_size + 1, size=count)
    ys = rng.integers(y0, y1 - lq_size + 1, size=count)
    return np.stack([xs, ys, xs + lq_size, ys + lq_size], axis=1).astype(np.int64)


def crop_pairs(lq: np.ndarray, target: np.ndarray, boxes: np.ndarray, lq_size: int,
               scale: int = SCALE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut (lq, target, valid) stacks for the given LQ patch boxes."""
    if target.shape[:2] != (lq.shape[0] * scale, lq.shape[1] * scale):
        raise ConfigError(f"target is {target.shape[1]}x{target.shape[0]}, expected x{scale} of the LQ "
                          f"{lq.shape[1]}x{lq.shape[0]}")
    lq_patches, target_patches, valid = [], [], []
    for x0, y0, x1, y1 in boxes:
        lq_patch = lq[y0:y1, x0:x1]
        target_patch = target[scale * y0:scale * y1, scale * x0:scale * x1]
        pad_y, pad_x = lq_size - (y1 - y0), lq_size - (x1 - x0)
        ones = np.ones(target_patch.shape[:2], np.float32)
        lq_patches.append(np.pad(lq_patch, ((0, pad_y), (0, pad_x), (0, 0)), mode="symmetric"))
        target_patches.append(np.pad(target_patch, ((0, scale * pad_y), (0, scale * pad_x), (0, 0)), mode="symmetric"))
        valid.append(np.pad(ones, ((0, scale * pad_y), (0, scale * pad_x))))
    return (np.stack(lq_patches).astype(np.float32), np.stack(target_patches).astype(np.float32),
            np.stack(valid))


def sample_pairs(lq: np.ndarray, target: np.ndarray, face_boxes: list[tuple[int, int, int, int]],
                 config: PatchConfig, rng: np.random.Generator) -> PatchPairs:
    """Pairs from every face box (LQ pixels, already clipped to the image)."""
    if not face_boxes:
        raise ConfigError("sample_pairs needs at least one face box, got none")
    per_face = counts_per_face(face_boxes, config)
    drawn = {index: sample_patch_boxes(box, count, config.lq_size, rng)
             for index, (box, count) in enumerate(zip(face_boxes, per_face)) if count > 0}
    face_index = np.concatenate([np.full(len(b), index) for index, b in drawn.items()])
    all_boxes = np.concatenate(list(drawn.values()))
    lq_patches, target_patches, valid = crop_pairs(lq, target, all_boxes, config.lq_size, config.scale)
    return PatchPairs(lq_patches, target_patches, valid, all_boxes, face_index)
