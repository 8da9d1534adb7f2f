"""Data passed between the runtime's stages. Plain frozen dataclasses: every stage
returns its results instead of keeping per-call state on an object."""

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

# The one scale f2n adapts and runs: the face stage, the patch pairs, tiling and the training
# tasks pair each LQ pixel with SCALE x SCALE output pixels. A network of another scale is
# refused when it loads (f2n.runtime.build.load_supported_network), not photo by photo.
SCALE = 4


@dataclass(frozen=True)
class PatchBatch:
    """The inner loop's training pairs for one photo.

    ``lq``: (N, 3, p, p) LQ patches, ``target``: (N, 3, 4p, 4p) restored-face patches,
    ``weight``: (N, 1, 4p, 4p) MaskNet weights (all ones without a trained MaskNet).
    All float32 RGB in [0, 1] on the CPU; the adaptation moves them where it runs.
    """

    lq: torch.Tensor
    target: torch.Tensor
    weight: torch.Tensor

    def __len__(self) -> int:
        return int(self.lq.shape[0])


@dataclass(frozen=True)
class FaceReport:
    """What was found about one detected face (LQ pixel coordinates)."""

    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in LQ pixels, clipped to the image
    score: float
    landmarks: np.ndarray  # (5, 2) LQ pixels: left eye, right eye, nose, mouth left, mouth right
    used: bool
    reason: str = ""  # why a face was rejected, empty when used
    num_patches: int = 0


@dataclass(frozen=True)
class FaceRegion:
    """One rectangle of the x4 canvas (``box``: x0, y0, x1, y1 canvas pixels) with restored faces in
    it: ``restored`` (h, w, 3) float32, the bicubic x4 with those faces blended in, and ``mask``
    (h, w) float32 in [0, 1], their soft paste mask."""

    box: tuple[int, int, int, int]
    restored: np.ndarray = field(repr=False)
    mask: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class FaceStageResult:
    """Output of the face stage for one photo. ``patches`` is None when no usable face
    was found; ``no_faces_reason`` then says why."""

    patches: PatchBatch | None
    faces: tuple[FaceReport, ...]
    timings: Mapping[str, float]  # seconds per step: detect, align, restore, mask, ...
    mask_source: str  # "masknet" or "ones (no trained MaskNet)"
    no_faces_reason: str = ""
    # the x4 canvas (bicubic, faces warped back) and its paste mask, only around the faces; the whole
    # pictures, where wanted: f2n.runtime.face.regions.full_canvas / mask_canvas
    regions: tuple["FaceRegion", ...] = field(default=(), repr=False)
    aligned_faces: np.ndarray | None = field(default=None, repr=False)  # (F, S, S, 3) aligned LQ faces, used faces only
    restored_faces: np.ndarray | None = field(default=None, repr=False)  # (F, S, S, 3) the prior's output
    patch_boxes: np.ndarray | None = field(default=None, repr=False)  # (N, 4) LQ x0, y0, x1, y1 of each pair

