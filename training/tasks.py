"""Meta-training tasks. A task is one sampled degradation applied to an HQ aligned face
(inner loop) and to an HQ natural crop (outer loop), so that adapting on the face is
scored on the same degradation elsewhere.

Task ``index`` of step ``step`` is drawn from ``numpy.random.default_rng([seed, step, index])``:
the same task comes out wherever it is computed, so a resumed run repeats the stream and
N workers that take consecutive slices of the indices see the tasks one worker would.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from f2n.runtime import SCALE
from f2n.training.config import DataConfig
from f2n.training.data import load_rgb, random_crop
from f2n.training.degradations import DegradationParams, degrade, sample_params
from f2n.training.maml import TaskBatch

# LQ face (1, 3, s/4, s/4) -> restored face (1, 3, s, s), e.g. a face prior such as GPEN.
FaceRestorer = Callable[[torch.Tensor], torch.Tensor]


def make_task(
    face_hq: torch.Tensor,
    natural_hq: torch.Tensor,
    params: DegradationParams,
    inner_patch: int,
    rng: np.random.Generator,
    restore: FaceRestorer | None = None,
) -> TaskBatch:
    """One task from a whole HQ face (3, S, S) and a natural crop (3, q, q) under one
    degradation. The face is degraded whole (a face prior needs the whole face), then an
    ``inner_patch`` crop is taken from the target and the matching LQ patch."""
    face_lq = degrade(face_hq[None], params, scale=SCALE)
    target = restore(face_lq) if restore is not None else face_hq[None]
    target_patch, top, left = random_crop(target[0], inner_patch, rng, multiple=SCALE)
    lq_patch = face_lq[0, :, top // SCALE : (top + inner_patch) // SCALE, left // SCALE : (left + inner_patch) // SCALE]
    natural_lq = degrade(natural_hq[None], params, scale=SCALE)
    return TaskBatch(lq_patch[None], target_patch[None], natural_lq, natural_hq[None])


@dataclass(frozen=True)
class TaskSampler:
    faces: tuple[Path, ...]
    naturals: tuple[Path, ...]
    data: DataConfig
    seed: int
    restore: FaceRestorer | None = None  # None: the GT face is the inner-loop target

    def task(self, step: int, index: int) -> TaskBatch:
        rng = np.random.default_rng([self.seed, step, index])
        face = _to_size(load_rgb(self.faces[rng.integers(len(self.faces))], SCALE * 4), self.data.face_size)
        natural = load_rgb(self.naturals[rng.integers(len(self.naturals))], self.data.outer_patch)
        natural_crop, _, _ = random_crop(natural, self.data.outer_patch, rng)
        params = sample_params(rng, ood=self.data.ood)
        return make_task(face, natural_crop, params, self.data.inner_patch, rng, self.restore)

    def batch(self, step: int, start: int, count: int) -> TaskBatch:
        """Tasks ``start`` .. ``start + count - 1`` of ``step``."""
        tasks = [self.task(step, index) for index in range(start, start + count)]
        return TaskBatch(*(torch.cat(parts) for parts in zip(
            *((t.face_lq, t.face_target, t.natural_lq, t.natural_hq) for t in tasks))))


def _to_size(face: torch.Tensor, size: int) -> torch.Tensor:
    """Aligned faces come at any square size (FFHQ 1024, 512 crops); the prior and the
    patch geometry expect ``size``."""
    if face.shape[-2:] == (size, size):
        return face
    resized = F.interpolate(face[None], size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    return resized[0].clamp(0, 1)
