"""``--save-debug``: pictures of what the face stage saw and made, for a person to look at.

Writes into ``out_dir``: ``face_<i>_crop.png`` (every detected face, LQ), ``face_<i>_aligned.png``
and ``face_<i>_restored.png`` (used faces), ``restored_x4.png`` and ``paste_mask_x4.png`` (the
x4 canvas and its soft paste mask), ``patch_weights.png`` (the pairs' weights, side by side)
and ``faces_and_patches.png`` (the photo with used faces green, rejected red, patches yellow).
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
from skimage.util import montage

from f2n.runtime.face.regions import full_canvas, mask_canvas
from f2n.runtime.images import write_image
from f2n.runtime.types import SCALE, FaceStageResult

_GREEN, _RED, _YELLOW, _BLUE = (0.1, 0.9, 0.1), (0.95, 0.1, 0.1), (1.0, 0.9, 0.0), (0.2, 0.5, 1.0)
_MIN_OVERVIEW_SIDE = 512  # small photos are enlarged (nearest) so the drawings can be seen


def save_debug(result: FaceStageResult, image: np.ndarray, out_dir: str | Path) -> list[Path]:
    """Write the debug pictures of one photo's face stage; returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def save(name: str, rgb: np.ndarray) -> None:
        write_image(out_dir / name, rgb)
        written.append(out_dir / name)

    for index, face in enumerate(result.faces):
        x0, y0, x1, y1 = face.box
        if x1 > x0 and y1 > y0:
            save(f"face_{index}_crop.png", image[y0:y1, x0:x1])
    used = [index for index, face in enumerate(result.faces) if face.used]
    for slot, index in enumerate(used):
        if result.aligned_faces is not None:
            save(f"face_{index}_aligned.png", result.aligned_faces[slot])
        if result.restored_faces is not None:
            save(f"face_{index}_restored.png", result.restored_faces[slot])
    if result.regions:  # the whole x4 pictures are built here, only when debug images are asked for
        save("restored_x4.png", full_canvas(image, result.regions, SCALE))
        mask = mask_canvas(result.regions, (SCALE * image.shape[0], SCALE * image.shape[1]))
        save("paste_mask_x4.png", np.repeat(mask[..., None], 3, axis=2))
    if result.patches is not None:
        save("patch_weights.png", _weight_grid(result.patches.weight.numpy()[:, 0]))
    save("faces_and_patches.png", draw_overview(result, image))
    return written


def draw_overview(result: FaceStageResult, image: np.ndarray) -> np.ndarray:
    """The photo with face boxes, landmarks and patch boxes drawn on it."""
    factor = max(1, math.ceil(_MIN_OVERVIEW_SIDE / max(image.shape[:2])))
    canvas = np.ascontiguousarray(np.repeat(np.repeat(image, factor, axis=0), factor, axis=1))
    thickness = max(1, round(max(canvas.shape[:2]) / 400))
    for box in [] if result.patch_boxes is None else result.patch_boxes:
        _rectangle(canvas, box, factor, _YELLOW, 1)
    for face in result.faces:
        _rectangle(canvas, face.box, factor, _GREEN if face.used else _RED, thickness)
        for x, y in face.landmarks:
            cv2.circle(canvas, (round(x * factor), round(y * factor)), 2 * thickness, _BLUE, -1)
    return canvas


def _rectangle(canvas: np.ndarray, box, factor: int, colour: tuple[float, float, float], thickness: int) -> None:
    x0, y0, x1, y1 = (int(v) * factor for v in box)
    cv2.rectangle(canvas, (x0, y0), (x1 - 1, y1 - 1), colour, thickness)


def _weight_grid(weights: np.ndarray) -> np.ndarray:
    """(N, h, w) weights -> one grey RGB picture, 8 per row 2 px apart, scaled so the largest weight is white."""
    columns = min(len(weights), 8)
    top = max(float(weights.max()), 1e-8)
    grid = montage(weights / top, fill=0, grid_shape=(math.ceil(len(weights) / columns), columns), padding_width=2)
    return np.repeat(grid[..., None], 3, axis=2)
