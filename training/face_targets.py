"""Inner-loop face targets: the GT face, or a face prior's restoration of the LQ face
(GPEN on the aligned 512 face), as at deployment time."""

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from f2n.errors import ConfigError, WeightsError
from f2n.runtime import FacePrior, make_prior
from f2n.training.tasks import FaceRestorer
from f2n.weights import weight_path

PRIOR_WEIGHTS = "gpen-bfr-512"


def resolve_face_targets(mode: str, device: torch.device, log: Callable[[str], None]) -> FaceRestorer | None:
    """The restorer for ``mode`` ("prior", "gt" or "auto"); None means GT targets.
    "auto" takes the prior when its weights are in the cache and says so either way."""
    if mode == "gt":
        return None
    if mode == "auto":
        try:
            weight_path(PRIOR_WEIGHTS, allow_download=False)
        except WeightsError:
            log(f"face targets: GT faces ({PRIOR_WEIGHTS} weights not in the cache; `f2n-models fetch {PRIOR_WEIGHTS}` enables the prior)")
            return None
    elif mode != "prior":
        raise ConfigError(f"face_targets must be auto, prior or gt, got {mode!r}")
    prior = make_prior("gpen", device=device)
    log(f"face targets: {prior.name} restorations of the LQ faces")
    return prior_restorer(prior)


def prior_restorer(prior: FacePrior) -> FaceRestorer:
    """Adapt a runtime face prior (aligned (N, S, S, 3) numpy faces) to LQ face tensors:
    bicubic x4 to the aligned size, restore, back to (N, 3, S, S)."""

    def restore(face_lq: torch.Tensor) -> torch.Tensor:
        size = face_lq.shape[-1] * 4
        upsampled = F.interpolate(face_lq, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
        faces = upsampled.permute(0, 2, 3, 1).cpu().numpy()
        # The faces are already aligned: identity affines (only an oracle prior reads them).
        affines = np.tile(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=np.float32), (len(faces), 1, 1))
        restored = prior.restore(faces, affines)
        return torch.from_numpy(np.ascontiguousarray(restored)).permute(0, 3, 1, 2).to(face_lq)

    return restore
