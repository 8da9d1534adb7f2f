"""A face prior that is a PyTorch network: GPEN (f2n's own) or a spandrel network
(GFPGAN, CodeFormer, RestoreFormer), called with its official conventions."""

from __future__ import annotations

import threading
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from f2n.runtime.face_restore import from_prior_output, to_prior_input
from f2n.runtime.prior_conventions import PriorConventions

# A prior network draws its noise from torch's global generator (spandrel's GFPGAN takes no
# generator of its own): seeding it and drawing happen under this lock, so that pipelines in
# threads neither reseed each other's draws nor take them; fork_rng gives the generator back as it was.
_GLOBAL_RNG = threading.Lock()


class TorchFacePrior:
    """All faces of a photo in batches of ``batch_size`` on ``device``. On CUDA the network
    runs under autocast in ``dtype`` when it tolerates it (else bfloat16, else float32),
    and a batch that comes out NaN/Inf is redone in float32. Random draws inside the
    network (GFPGAN's decoder noise) come from a generator seeded with ``seed`` at every
    call, so the same photo is restored the same way every time."""

    def __init__(self, model: nn.Module, conventions: PriorConventions, *, name: str,
                 options: Mapping[str, float], provenance: Mapping[str, str], device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float16, batch_size: int = 4, seed: int = 0) -> None:
        self.model = model.eval().to(device)
        self.conventions = conventions
        self.size = conventions.size or int(model.size)  # GPEN's size comes from its weights
        self.name = name
        self.options = dict(options)
        self.provenance = dict(provenance)
        self.device = torch.device(device)
        self.autocast = self._autocast_dtype(dtype)
        self.batch_size = batch_size
        self.seed = seed

    def _autocast_dtype(self, requested: torch.dtype) -> torch.dtype | None:
        if self.device.type != "cuda":
            return None
        allowed = self.conventions.autocast
        return requested if requested in allowed else (allowed[0] if allowed else None)

    @torch.inference_mode()
    def restore(self, aligned_faces: np.ndarray, affines_x4: np.ndarray) -> np.ndarray:
        faces = torch.from_numpy(np.ascontiguousarray(aligned_faces, dtype=np.float32)).permute(0, 3, 1, 2)
        conventions = self.conventions
        outputs = []
        with _GLOBAL_RNG, torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(self.seed)
            for batch in faces.split(self.batch_size):
                x = to_prior_input(batch.to(self.device), self.size, conventions.value_range, conventions.colour_order)
                restored = self._forward(x)
                outputs.append(from_prior_output(restored, batch.shape[-1], conventions.value_range,
                                                 conventions.colour_order).cpu())
        return torch.cat(outputs).permute(0, 2, 3, 1).numpy()

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.autocast is not None:
            with torch.autocast("cuda", dtype=self.autocast):
                restored = self.conventions.call(self.model, x, self.options).float()
            if torch.isfinite(restored).all():
                return restored
        return self.conventions.call(self.model, x, self.options).float()
