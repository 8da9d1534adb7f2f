"""The face stage: from an LQ photo to (LQ patch, restored x4 patch, weight) training pairs.

Steps: detect -> select -> align -> restore -> paste back -> sample patches -> weigh.

Alignment choice: the prior's input is warped straight from the LQ photo with the LQ
affine (bicubic), as GPEN's own pipeline warps its input; the restored face is put
back on the x4 canvas with the *x4* affine (the LQ affine scaled with the half-pixel
offset), so LQ pixel (x, y) and x4 pixels (4x .. 4x+3, 4y .. 4y+3) stay the same spot.
The canvas under and around the faces is the bicubic x4 of the photo; it is built only
around the faces (:mod:`f2n.runtime.face.regions`), so the stage needs memory in
proportion to the faces, not to the x4 photo.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from f2n.errors import ConfigError, InputImageError
from f2n.inner_loop import masknet_lq_input
from f2n.nets.masknet import MaskNet
from f2n.runtime.face.align import estimate_affine, face_template, scale_affine_to_canvas, warp_face
from f2n.runtime.face.detect import Detections
from f2n.runtime.face.patches import PatchConfig, sample_pairs
from f2n.runtime.face.prior import FacePrior
from f2n.runtime.face.regions import RegionCanvas, face_regions
from f2n.runtime.report import timed
from f2n.runtime.sanity import prior_output_problem
from f2n.runtime.types import SCALE, FaceReport, FaceStageResult, PatchBatch

MASK_ONES = "ones (no trained MaskNet)"
Detector = Callable[[np.ndarray], Detections]


@dataclass(frozen=True)
class FaceStageConfig:
    score_threshold: float = 0.9
    min_face_size: int = 16  # shorter side of the face box, LQ pixels
    max_faces: int = 8  # best faces kept, ranked by score x box size
    min_eye_distance: float = 0.15  # eye distance / box width; lower means a profile or a bad detection
    face_size: int = 512  # aligned face side fed to the prior
    patches: PatchConfig = field(default_factory=PatchConfig)

    def __post_init__(self) -> None:
        if self.patches.scale != SCALE:
            raise ConfigError(f"the face stage works at x{SCALE}, got patch scale {self.patches.scale}")
        if self.max_faces < 1 or self.min_face_size < 1:
            raise ConfigError(f"max_faces and min_face_size must be >= 1, got {self.max_faces}, {self.min_face_size}")


def run_face_stage(image_rgb: np.ndarray, *, detector: Detector, prior: FacePrior,
                   config: FaceStageConfig = FaceStageConfig(), masknet: MaskNet | None = None,
                   seed: int = 0) -> FaceStageResult:
    """Training pairs for one photo ((H, W, 3) float32 RGB in [0, 1]). Never raises for a photo
    without usable faces: ``patches`` is then None and ``no_faces_reason`` says why."""
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise InputImageError(f"the face stage needs an (H, W, 3) RGB image, got shape {tuple(image_rgb.shape)}")
    image = image_rgb.astype(np.float32, copy=False)
    timings: dict[str, float] = {}
    mask_source = "masknet" if masknet is not None else MASK_ONES

    # 1. detect
    with timed(timings, "detect"):
        detections = detector(image)

    # 2. select: score, size, landmark sanity, top-K; 3. align the survivors
    with timed(timings, "align"):
        reports = select_faces(detections, image.shape[:2], config)
        reports, affines = _align(reports, config.face_size)
        used = [report for report in reports if report.used]
        if not used:
            return FaceStageResult(None, tuple(reports), timings, mask_source,
                                   no_faces_reason=_no_faces_reason(reports))
        affines_x4 = np.stack([scale_affine_to_canvas(affine, SCALE) for affine in affines])
        aligned = np.stack([warp_face(image, affine, config.face_size) for affine in affines])

    # 4. restore
    with timed(timings, "restore"):
        restored = prior.restore(aligned, affines_x4)
        problem = prior_output_problem(restored, aligned.shape)
        if problem:  # every prior's output checked here: a bad target must not count as adapted
            return FaceStageResult(None, tuple(reports), timings, mask_source,
                                   no_faces_reason=f"face prior {prior.name} {problem}")

    # 5. paste the restored faces onto the bicubic x4 canvas, built only around the faces
    with timed(timings, "paste"):
        face_boxes = [report.box for report in used]
        regions = face_regions(image, restored, affines_x4, face_boxes, SCALE)
        canvas = RegionCanvas(regions, (SCALE * image.shape[0], SCALE * image.shape[1]))

    # 6. sample pairs inside the face boxes
    with timed(timings, "patches"):
        pairs = sample_pairs(image, canvas, face_boxes, config.patches, np.random.default_rng(seed))
        lq = torch.from_numpy(pairs.lq).permute(0, 3, 1, 2).contiguous()
        target = torch.from_numpy(pairs.target).permute(0, 3, 1, 2).contiguous()
        valid = torch.from_numpy(pairs.valid)[:, None]

    # 7. weigh each pixel
    with timed(timings, "mask"):
        weight = patch_weights(lq, target, valid, masknet)

    counts = iter(np.bincount(pairs.face_index, minlength=len(used)).tolist())  # in the order of `used`
    reports = [replace(report, num_patches=next(counts)) if report.used else report for report in reports]
    return FaceStageResult(PatchBatch(lq, target, weight), tuple(reports), timings, mask_source,
                           regions=regions, aligned_faces=aligned,
                           restored_faces=restored, patch_boxes=pairs.boxes)


def select_faces(detections: Detections, image_hw: tuple[int, int], config: FaceStageConfig) -> list[FaceReport]:
    """One report per detection, ranked by score x size; ``used`` for the kept ones, else a reason."""
    height, width = image_hw
    boxes = _integer_boxes(detections.boxes, width, height)
    sizes = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    reports: list[FaceReport] = []
    kept = 0
    for index in np.argsort(-(detections.scores * sizes), kind="stable"):
        score, size, landmarks = float(detections.scores[index]), int(sizes[index]), detections.landmarks[index]
        box = tuple(int(v) for v in boxes[index])
        if score < config.score_threshold:
            reason = f"score {score:.3f} < threshold {config.score_threshold}"
        elif size < config.min_face_size:
            reason = f"face {size} px < min_face_size {config.min_face_size} px"
        else:
            reason = landmark_problem(landmarks, box, config.min_eye_distance)
        if not reason and kept >= config.max_faces:
            reason = f"beyond max_faces={config.max_faces} (ranked by score x size)"
        kept += not reason
        reports.append(FaceReport(box, score, landmarks, used=not reason, reason=reason))
    return reports


def landmark_problem(landmarks: np.ndarray, box: tuple[int, int, int, int], min_eye_distance: float) -> str:
    """Why the 5 landmarks do not look like an upright frontal face in ``box`` ('' if they do)."""
    x0, y0, x1, y1 = box
    margin_x, margin_y = 0.25 * (x1 - x0), 0.25 * (y1 - y0)
    inside = ((landmarks[:, 0] >= x0 - margin_x) & (landmarks[:, 0] <= x1 + margin_x)
              & (landmarks[:, 1] >= y0 - margin_y) & (landmarks[:, 1] <= y1 + margin_y))
    if not inside.all():
        return f"landmarks {np.flatnonzero(~inside).tolist()} lie outside the face box"
    left_eye, right_eye, _, mouth_left, mouth_right = landmarks
    if left_eye[0] >= right_eye[0]:
        return "landmarks: left eye is not left of the right eye"
    if (left_eye[1] + right_eye[1]) / 2 >= (mouth_left[1] + mouth_right[1]) / 2:
        return "landmarks: eyes are not above the mouth"
    eye_ratio = float(np.linalg.norm(right_eye - left_eye)) / max(x1 - x0, 1)
    if eye_ratio < min_eye_distance:
        return f"eye distance {eye_ratio:.2f} x box width < {min_eye_distance} (profile face?)"
    return ""


def patch_weights(lq: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                  masknet: MaskNet | None) -> torch.Tensor:
    """MaskNet(bicubic x4 of the LQ patch, restored patch) where a MaskNet is given, else ones;
    zero on padding that made a small face up to the patch size. The bicubic is the one
    the MaskNet was trained with (``masknet.lq_resize``)."""
    if masknet is None:
        return valid.clone()
    device = next(masknet.parameters()).device
    with torch.inference_mode():
        upsampled = masknet_lq_input(lq.to(device), target.shape[-2:], masknet.lq_resize)
        weight = masknet(upsampled, target.to(device)).float().cpu()
    return weight * valid


def _align(reports: list[FaceReport], face_size: int) -> tuple[list[FaceReport], list[np.ndarray]]:
    """LQ->face affines of the used faces; a face whose landmarks fit no similarity is rejected."""
    template = face_template(face_size)
    aligned_reports, affines = [], []
    for report in reports:
        if report.used:
            try:
                affines.append(estimate_affine(report.landmarks, template))
            except ValueError as error:
                report = replace(report, used=False, reason=f"alignment failed: {error}")
        aligned_reports.append(report)
    return aligned_reports, affines


def _integer_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Float boxes -> int x0, y0, x1, y1 covering them, clipped to the image."""
    if len(boxes) == 0:
        return np.zeros((0, 4), np.int64)
    out = np.concatenate([np.floor(boxes[:, :2]), np.ceil(boxes[:, 2:])], axis=1).astype(np.int64)
    out[:, 0::2] = out[:, 0::2].clip(0, width)
    out[:, 1::2] = out[:, 1::2].clip(0, height)
    return out


def _no_faces_reason(reports: list[FaceReport]) -> str:
    if not reports:
        return "no face detected"
    reasons = "; ".join(f"face {index} ({report.score:.2f}): {report.reason}" for index, report in enumerate(reports[:3]))
    more = f"; and {len(reports) - 3} more" if len(reports) > 3 else ""
    return f"all {len(reports)} detected faces were rejected: {reasons}{more}"
