"""Face alignment geometry: pure functions of landmarks, matrices and arrays.

Affines are 2x3 float64 matrices in OpenCV's convention (pixel centres at integer
coordinates) that map image coordinates to aligned-face coordinates. A pixel of the LQ
photo at x covers x4 pixels 4x .. 4x+3, whose centre is 4x + 1.5: that is the
half-pixel offset of :func:`scale_affine_to_canvas`.

facexlib's FaceRestoreHelper is not called for these: its template exists only on a helper
instance, whose constructor loads (and first downloads) a face detector; its similarity
transform is the same ``cv2.estimateAffinePartial2D(..., LMEDS)`` call as here; and its
paste-back puts an LQ pixel x at 4x + 2 on the x4 canvas (``inverse * 4``, then ``+ 0.5 * 4``)
where its centre is 4x + 1.5: half a canvas pixel off, which drops the LQ-vs-x4 aligned-face
agreement of tests/test_face_align.py from 56.1 dB to 44.2 dB (the test asks for 45).
"""

from __future__ import annotations

import cv2
import numpy as np

# FFHQ 5-point template for 512x512 faces (facexlib FaceRestoreHelper, 'ffhq' template):
# left eye, right eye, nose, mouth left, mouth right.
FFHQ_TEMPLATE_512 = np.array(
    [[192.98138, 239.94708], [318.90277, 240.1936], [256.63416, 314.01935], [201.26117, 371.41043],
     [313.08905, 371.15118]], dtype=np.float64)

# facexlib pads warped faces with this grey; GPEN was trained on faces aligned the same way.
BORDER_GREY = (135 / 255, 133 / 255, 132 / 255)


def face_template(size: int = 512) -> np.ndarray:
    """The FFHQ template for a ``size`` x ``size`` aligned face."""
    return FFHQ_TEMPLATE_512 * (size / 512)


def estimate_affine(landmarks: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Similarity transform (rotation, uniform scale, shift) from ``landmarks`` onto ``template``,
    robust to one bad point (LMEDS, as facexlib). Raises ValueError on degenerate landmarks."""
    affine, _ = cv2.estimateAffinePartial2D(np.asarray(landmarks, np.float64), np.asarray(template, np.float64),
                                            method=cv2.LMEDS)
    if affine is None or not np.isfinite(affine).all() or abs(np.linalg.det(affine[:, :2])) < 1e-12:
        raise ValueError(f"no similarity transform fits the landmarks {np.round(landmarks, 1).tolist()}")
    return affine


def scale_affine_to_canvas(affine: np.ndarray, factor: int = 4) -> np.ndarray:
    """Turn an affine from LQ coordinates into one from the x``factor`` canvas.

    x_lq = (x_canvas - offset) / factor with offset = (factor - 1) / 2, so the same face
    lands on the same aligned pixels whether it is taken from the LQ photo or its x4 version.
    """
    linear = affine[:, :2] / factor
    offset = (factor - 1) / 2
    shift = affine[:, 2] - linear @ np.array([offset, offset])
    return np.concatenate([linear, shift[:, None]], axis=1)


def inverse_affine(affine: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(affine)


def warp_face(image: np.ndarray, affine: np.ndarray, size: int = 512,
              interpolation: int = cv2.INTER_CUBIC) -> np.ndarray:
    """Aligned ``size`` x ``size`` face from an (H, W, 3) float image; outside pixels are grey."""
    return cv2.warpAffine(image, affine, (size, size), flags=interpolation, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=BORDER_GREY)


def face_roi(face_size: int, inv_affine: np.ndarray, canvas_hw: tuple[int, int], margin: int = 2) -> tuple[int, int, int, int]:
    """x0, y0, x1, y1 of the canvas area an aligned face lands on (its warped square, plus a margin)."""
    corners = np.array([[0, 0, 1], [face_size, 0, 1], [0, face_size, 1], [face_size, face_size, 1]], np.float64)
    mapped = corners @ inv_affine.T
    height, width = canvas_hw
    x0, y0 = np.floor(mapped.min(axis=0)).astype(int) - margin
    x1, y1 = np.ceil(mapped.max(axis=0)).astype(int) + margin
    return max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)


def face_mask(face_size: int) -> np.ndarray:
    """Soft (S, S) float32 paste mask in aligned-face space: the square eroded by 1/20 of its
    side and feathered with a Gaussian of the same width, so that the pasted border never
    shows (facexlib's rule of thumb, applied before warping: the same under a similarity
    transform, and its cost does not grow with the face's size on the canvas)."""
    edge = max(1, face_size // 20)
    mask = np.zeros((face_size, face_size), np.float32)
    mask[edge:-edge, edge:-edge] = 1.0
    blur = 2 * edge + 1
    return cv2.GaussianBlur(mask, (blur, blur), 0)


def paste_mask(face_size: int, inv_affine: np.ndarray, canvas_hw: tuple[int, int]) -> np.ndarray:
    """Soft (H, W) float32 mask of where an aligned face lands on a canvas of ``canvas_hw``."""
    height, width = canvas_hw
    mask = cv2.warpAffine(face_mask(face_size), inv_affine, (width, height), flags=cv2.INTER_LINEAR)
    return np.clip(mask, 0.0, 1.0)


def warp_to_canvas(face: np.ndarray, inv_affine: np.ndarray,
                   canvas_hw: tuple[int, int]) -> tuple[tuple[int, int, int, int], np.ndarray, np.ndarray]:
    """An aligned face warped onto the area of a ``canvas_hw`` canvas it lands on: that area
    (x0, y0, x1, y1, empty when the face lies off the canvas), the warped face (h, w, 3) and its
    soft mask (h, w). The result depends on the canvas only through its size, so a caller holding
    just a region of the canvas gets the same pixels as one holding all of it."""
    x0, y0, x1, y1 = face_roi(face.shape[0], inv_affine, canvas_hw)
    if x1 <= x0 or y1 <= y0:
        return (x0, y0, x0, y0), np.zeros((0, 0, 3), face.dtype), np.zeros((0, 0), np.float32)
    local = inv_affine - np.array([[0, 0, x0], [0, 0, y0]], np.float64)  # canvas -> ROI coordinates
    warped = cv2.warpAffine(face, local, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return (x0, y0, x1, y1), warped, paste_mask(face.shape[0], local, (y1 - y0, x1 - x0))


def blend_into(canvas: np.ndarray, origin: tuple[int, int], roi: tuple[int, int, int, int], warped: np.ndarray,
               mask: np.ndarray) -> None:
    """Blend a warped face over ``canvas`` in place; ``canvas`` starts at ``origin`` (x, y) of the
    canvas that ``roi`` is given in."""
    x0, y0, x1, y1 = roi
    region = canvas[y0 - origin[1]:y1 - origin[1], x0 - origin[0]:x1 - origin[0]]
    region[...] = (region * (1.0 - mask[..., None]) + warped * mask[..., None]).astype(canvas.dtype)


def paste_back(canvas: np.ndarray, face: np.ndarray, inv_affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Blend an aligned face back onto ``canvas`` (not modified). Returns (new canvas, soft mask).

    Only the area the face lands on is warped and blended: large canvases stay cheap.
    """
    height, width = canvas.shape[:2]
    roi, warped, mask = warp_to_canvas(face, inv_affine, (height, width))
    out = canvas.copy()
    full_mask = np.zeros((height, width), np.float32)
    x0, y0, x1, y1 = roi
    if x1 > x0 and y1 > y0:
        blend_into(out, (0, 0), roi, warped, mask)
        full_mask[y0:y1, x0:x1] = mask
    return out, full_mask
