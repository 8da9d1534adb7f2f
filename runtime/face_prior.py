"""Face priors: what turns aligned LQ faces into restored faces.

Every prior takes a batch of aligned faces, (N, S, S, 3) float32 RGB in [0, 1], together
with the affines that map the x4 canvas onto each aligned face (an oracle needs them to
cut the same face out of a ground-truth x4 image), and returns the same shape.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from f2n.errors import ConfigError, InputImageError, WeightsError
from f2n.nets.gpen import GPEN
from f2n.runtime.face_align import warp_face

RestoreFn = Callable[[np.ndarray], np.ndarray]


class FacePrior(Protocol):
    name: str

    def restore(self, aligned_faces: np.ndarray, affines_x4: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) aligned LQ faces + (N, 2, 3) canvas->face affines -> (N, S, S, 3) restored."""


class GPENPrior:
    """GPEN-BFR-512 (or -256: faces are resized to its size and back) on ``device``.

    On CUDA it runs under autocast in ``dtype`` (float16 or bfloat16); on the CPU in float32.
    """

    def __init__(self, weights: str | Path | None = None, *, size: int = 512, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float16, batch_size: int = 4) -> None:
        """``weights``: a GPEN file; None takes the registry's ``gpen-bfr-<size>``. The network's
        size and width are read from the file's tensor shapes."""
        from f2n.weights import load_into, load_state_dict_file, weight_path

        path = Path(weights) if weights is not None else weight_path(f"gpen-bfr-{size}")
        state = load_state_dict_file(path)  # WeightsError when missing or corrupt
        hyperparameters = gpen_hyperparameters(state, path)
        with torch.device("meta"):
            model = GPEN(**hyperparameters)  # no random init of 71 M parameters: the file fills it
        load_into(model, state, what=f"GPEN weights {path}")
        self.model = model.eval().to(device)
        self.name = f"gpen-bfr-{model.size}"
        self.device = torch.device(device)
        self.dtype = dtype
        self.batch_size = batch_size

    @torch.inference_mode()
    def restore(self, aligned_faces: np.ndarray, affines_x4: np.ndarray) -> np.ndarray:
        faces = torch.from_numpy(np.ascontiguousarray(aligned_faces)).permute(0, 3, 1, 2)
        outputs = []
        for batch in faces.split(self.batch_size):
            batch = batch.to(self.device, torch.float32)
            face_size = batch.shape[-1]
            if face_size != self.model.size:
                batch = F.interpolate(batch, size=self.model.size, mode="bicubic", align_corners=False)
            autocast = (torch.autocast("cuda", dtype=self.dtype) if self.device.type == "cuda" else nullcontext())
            with autocast:
                restored = self.model(batch * 2 - 1).float()  # GPEN works in [-1, 1]
            if face_size != self.model.size:
                restored = F.interpolate(restored, size=face_size, mode="bicubic", align_corners=False)
            outputs.append(((restored + 1) / 2).clamp(0, 1).cpu())
        return torch.cat(outputs).permute(0, 2, 3, 1).numpy()


def gpen_hyperparameters(state: dict[str, torch.Tensor], path: Path) -> dict[str, float]:
    """GPEN's constructor arguments from a state dict's key names and tensor shapes."""
    try:
        num_encoders = 1 + max(int(key.split(".")[0][3:]) for key in state if key.startswith("ecd"))
        style_dim, flat = state["final_linear.0.weight"].shape
        n_mlp = sum(1 for key in state if key.startswith("generator.style.") and key.endswith(".weight"))
        size = 2 ** (num_encoders + 1)
        narrow = flat / 16 / 512  # channels at 4x4 are 512 * narrow
        # channels at full size are (16384 / size) * multiplier * narrow for sizes >= 64
        multiplier = round(state["ecd0.0.0.weight"].shape[0] / (16384 / size * narrow))
    except (KeyError, ValueError, ZeroDivisionError) as error:
        raise WeightsError(f"{path} is not a GPEN checkpoint (cannot read its layout: {error!r})") from None
    return {"size": size, "style_dim": int(style_dim), "n_mlp": n_mlp, "channel_multiplier": multiplier,
            "narrow": narrow}


class OraclePrior:
    """Cuts each face out of a known ground-truth x4 image with the same alignment:
    an upper bound for the prior, and a geometry check for the stage."""

    name = "oracle"

    def __init__(self, ground_truth_x4: np.ndarray) -> None:
        if ground_truth_x4.ndim != 3 or ground_truth_x4.shape[2] != 3:
            raise InputImageError(f"oracle ground truth must be (H, W, 3), got {tuple(ground_truth_x4.shape)}")
        self.ground_truth_x4 = ground_truth_x4.astype(np.float32)

    def restore(self, aligned_faces: np.ndarray, affines_x4: np.ndarray) -> np.ndarray:
        size = aligned_faces.shape[1]
        return np.stack([warp_face(self.ground_truth_x4, affine, size) for affine in affines_x4]).astype(np.float32)


class CallablePrior:
    """Any restorer ``fn(aligned_faces) -> restored_faces`` working on (N, S, S, 3) float arrays."""

    def __init__(self, fn: RestoreFn, name: str) -> None:
        self.fn = fn
        self.name = name

    def restore(self, aligned_faces: np.ndarray, affines_x4: np.ndarray) -> np.ndarray:
        restored = np.asarray(self.fn(aligned_faces), dtype=np.float32)
        if restored.shape != aligned_faces.shape:
            raise ConfigError(f"face prior {self.name} returned shape {restored.shape}, expected {aligned_faces.shape}")
        return restored


def make_prior(spec: str, *, device: str | torch.device = "cpu", lq_shape: tuple[int, int] | None = None) -> FacePrior:
    """``gpen`` / ``gpen-256``, ``oracle:PATH`` (ground-truth x4 image) or ``package.module:function``.

    ``lq_shape`` (H, W) of the LQ photo lets ``oracle:`` check that the ground truth is its x4.
    """
    if spec in ("gpen", "gpen-512", "gpen-256"):
        return GPENPrior(size=256 if spec == "gpen-256" else 512, device=device)
    if spec.startswith("oracle:"):
        from f2n.runtime.images import read_image

        ground_truth = read_image(spec[len("oracle:"):]).rgb
        if lq_shape is not None and ground_truth.shape[:2] != (4 * lq_shape[0], 4 * lq_shape[1]):
            raise ConfigError(f"oracle image is {ground_truth.shape[1]}x{ground_truth.shape[0]}, "
                              f"expected the x4 size {4 * lq_shape[1]}x{4 * lq_shape[0]}")
        return OraclePrior(ground_truth)
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"unknown face prior {spec!r}; expected 'gpen', 'gpen-256', 'oracle:PATH' or 'module.path:callable'")
    try:
        fn = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ConfigError(f"cannot load face prior {spec!r}: {error}") from None
    if not callable(fn):
        raise ConfigError(f"face prior {spec!r} is a {type(fn).__name__}, expected a callable")
    return CallablePrior(fn, name=spec)
