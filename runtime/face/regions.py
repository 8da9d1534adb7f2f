"""The x4 canvas of the face stage, held only where the faces are.

The training targets are cut from the bicubic x4 of the photo with the restored faces
blended in. Only the face areas of that canvas are ever read (patches lie inside face
boxes; the paste mask is zero elsewhere), so it is built per *region*: the area each
restored face lands on together with its face box, overlapping areas merged. A region
holds exactly the pixels the full canvas would have there (the bicubic x4 of a crop
with a margin equals the full image's x4 away from the crop border, and each face is
warped in full-canvas coordinates), in the memory of the faces rather than of the
photo x16.

:func:`full_canvas` and :func:`mask_canvas` rebuild the whole-photo pictures for the
debug images and the face/non-face metrics, only where those are asked for.
"""

from __future__ import annotations

import cv2
import numpy as np

from f2n.runtime.face.align import blend_into, face_roi, inverse_affine, warp_to_canvas
from f2n.runtime.types import FaceRegion

Box = tuple[int, int, int, int]  # x0, y0, x1, y1


def face_regions(image: np.ndarray, restored_faces: np.ndarray, affines_x4: np.ndarray,
                 face_boxes: list[Box], scale: int) -> tuple[FaceRegion, ...]:
    """Regions of the x4 canvas of ``image`` covering every face: where each restored face lands
    and its (LQ) face box, merged where they overlap. Faces are blended in their given order; a
    region's faces are warped only while it is built, so one region's worth is in memory at a time."""
    height, width = image.shape[:2]
    canvas_hw = (scale * height, scale * width)
    inverses = [inverse_affine(affine) for affine in affines_x4]
    areas = [_union(face_roi(face.shape[0], inverse, canvas_hw), (scale * x0, scale * y0, scale * x1, scale * y1))
             for face, inverse, (x0, y0, x1, y1) in zip(restored_faces, inverses, face_boxes)]
    regions = []
    for box, members in merge_overlapping(areas):
        restored = bicubic_region(image, box, scale)
        mask = np.zeros(restored.shape[:2], np.float32)
        for index in members:
            roi, warped, face_mask = warp_to_canvas(restored_faces[index].astype(np.float32), inverses[index],
                                                    canvas_hw)
            if roi[2] > roi[0] and roi[3] > roi[1]:
                blend_into(restored, box[:2], roi, warped, face_mask)
                rows, cols = slice(roi[1] - box[1], roi[3] - box[1]), slice(roi[0] - box[0], roi[2] - box[0])
                mask[rows, cols] = np.maximum(mask[rows, cols], face_mask)
        regions.append(FaceRegion(box, restored, mask))
    return tuple(regions)


def merge_overlapping(boxes: list[Box]) -> list[tuple[Box, list[int]]]:
    """Disjoint boxes covering ``boxes``: overlapping ones joined into their bounding box until
    none overlap. Each comes with the indices of the input boxes it holds, in input order."""
    groups = [(box, [index]) for index, box in enumerate(boxes)]
    merged = True
    while merged:
        merged = False
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                if _overlap(groups[i][0], groups[j][0]):
                    groups[i] = (_union(groups[i][0], groups[j][0]), sorted(groups[i][1] + groups[j][1]))
                    del groups[j]
                    merged = True
                    break
            if merged:
                break
    return groups


def bicubic_region(image: np.ndarray, box: Box, scale: int) -> np.ndarray:
    """``box`` (x4 canvas pixels) of the bicubic x``scale`` of ``image``, clipped to [0, 1], from a
    crop of ``image`` with a margin: the cubic kernel reaches 2 source pixels, so every pixel of
    ``box`` is computed from the same source pixels as in the whole image's x``scale``."""
    height, width = image.shape[:2]
    x0, y0, x1, y1 = box
    margin = 2
    lx0, ly0 = max(x0 // scale - margin, 0), max(y0 // scale - margin, 0)
    lx1, ly1 = min(-(-x1 // scale) + margin, width), min(-(-y1 // scale) + margin, height)
    crop = image[ly0:ly1, lx0:lx1]
    upscaled = cv2.resize(crop, (scale * crop.shape[1], scale * crop.shape[0]), interpolation=cv2.INTER_CUBIC)
    region = upscaled[y0 - scale * ly0:y1 - scale * ly0, x0 - scale * lx0:x1 - scale * lx0]
    return np.clip(region, 0, 1).astype(np.float32)


class RegionCanvas:
    """The x4 canvas as ``sample_pairs`` reads it: shaped like the full (sH, sW, 3) canvas and
    sliced the same way, but holding only the face regions. A slice must lie inside one region,
    which every patch does (patches are drawn inside face boxes, and every face box lies in its
    region)."""

    def __init__(self, regions: tuple[FaceRegion, ...], canvas_hw: tuple[int, int]) -> None:
        self.regions = regions
        self.shape = (*canvas_hw, 3)

    def __getitem__(self, index: tuple[slice, slice]) -> np.ndarray:
        rows, cols = index
        for region in self.regions:
            x0, y0, x1, y1 = region.box
            if x0 <= cols.start and cols.stop <= x1 and y0 <= rows.start and rows.stop <= y1:
                return region.restored[rows.start - y0:rows.stop - y0, cols.start - x0:cols.stop - x0]
        raise IndexError(f"canvas rows {rows.start}:{rows.stop}, columns {cols.start}:{cols.stop} lie in no face region")


def full_canvas(image: np.ndarray, regions: tuple[FaceRegion, ...], scale: int) -> np.ndarray:
    """The whole x``scale`` canvas (bicubic, restored faces in): for the debug images only."""
    height, width = image.shape[:2]
    canvas = np.clip(cv2.resize(image, (scale * width, scale * height), interpolation=cv2.INTER_CUBIC), 0, 1)
    for region in regions:
        x0, y0, x1, y1 = region.box
        canvas[y0:y1, x0:x1] = region.restored
    return canvas


def mask_canvas(regions: tuple[FaceRegion, ...], canvas_hw: tuple[int, int]) -> np.ndarray:
    """The whole soft paste mask (zero outside the regions): for debug images and face metrics."""
    mask = np.zeros(canvas_hw, np.float32)
    for region in regions:
        x0, y0, x1, y1 = region.box
        mask[y0:y1, x0:x1] = region.mask
    return mask


def paste_regions(sr: np.ndarray, regions: tuple[FaceRegion, ...], row: int = 0) -> np.ndarray:
    """Blend the restored faces over the SR result in place, region by region (``--paste-faces``).
    ``sr`` may be a band of the canvas whose first row is canvas row ``row``: only the part of each
    region inside it is pasted, so the tiles' bands can be pasted before they are stored as integers."""
    for region in regions:
        x0, y0, x1, y1 = region.box
        top, bottom = max(y0, row), min(y1, row + len(sr))
        if top >= bottom:
            continue
        weight = np.clip(region.mask[top - y0:bottom - y0], 0.0, 1.0)[:, :, None]
        restored = region.restored[top - y0:bottom - y0]
        rows = slice(top - row, bottom - row)
        sr[rows, x0:x1] = sr[rows, x0:x1] * (1.0 - weight) + restored * weight
    return sr


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _union(a: Box, b: Box) -> Box:
    if a[2] <= a[0] or a[3] <= a[1]:  # an empty area (a face off the canvas) adds nothing
        return b
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])
