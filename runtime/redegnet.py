"""ReDegNet adaptation (Li et al., ECCV 2022): learn the photo's degradation from its faces,
render HQ natural images through it, fine-tune θ on those synthetic natural pairs.

Per photo: the face stage gives each usable face aligned (LQ) and restored; both are
brought to the SR output's scale and cropped as the official training and validation
code does (``redeg_model.py``: resize to 4x the face's side in LQ pixels, drop a 3 %
border, random crops of the networks' size); DegNet reads Ω from each (restored, LQ)
crop pair; SynNet renders random crops of HQ natural images (the bank) through Ω; the
rendered images, bilinearly reduced x4 as the official code feeds F2N-ESRGAN, are the
LQ side of the pairs and the natural crops their targets. The inner loop of
:mod:`f2n.runtime.adapt` then fine-tunes θ on them, and θ′ reaches the engine through the
pipeline's one ``set_weights`` like every other method's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from f2n.errors import ConfigError
from f2n.nets.redegnet_degnet import DegNet
from f2n.nets.redegnet_syn_encoder import SynNetEncoder
from f2n.nets.redegnet_syn_generator import SynNetGenerator
from f2n.runtime.adapt import AdaptConfig, resolved_precision
from f2n.runtime.adapt import adapt as run_inner_loop
from f2n.runtime.face.align import estimate_affine, face_template
from f2n.runtime.face.prior import FacePrior
from f2n.runtime.face.stage import Detector, FaceStageConfig, run_face_stage
from f2n.runtime.images import image_files, read_image
from f2n.runtime.loss_networks import LossNetworks
from f2n.runtime.methods import MethodOutcome, StepHook
from f2n.runtime.report import timed
from f2n.runtime.types import SCALE, FaceStageResult, PatchBatch
from f2n.weights.checkpoint import load_state_dict_file
from f2n.weights.networks import load_network

BORDER_FRACTION = 0.03  # redeg_model.py's rm_pad: the border of an aligned face is background
WEIGHT_NAMES = {  # the registry's names of the released files
    "degnet": "redegnet-degnet", "encoder": "redegnet-syn-encoder", "generator": "redegnet-syn-generator",
}
RELEASED_STEMS = ("net_deg", "net_synE", "net_synG")  # net_deg_init.pth; f2n-train writes net_deg_0000100.pth


def _latest(folder: Path, stem: str) -> Path:
    """``<stem>_init.pth`` or the ``<stem>_<step>.pth`` with the highest step in ``folder``."""
    steps = {path: path.stem.rpartition("_")[2] for path in folder.glob(f"{stem}_*.pth")}
    numbered = {path: int(step) for path, step in steps.items() if step.isdigit()}
    if numbered:
        return max(numbered, key=numbered.__getitem__)
    if (folder / f"{stem}_init.pth").is_file():
        return folder / f"{stem}_init.pth"
    raise ConfigError(f"{folder} holds no {stem}_init.pth or {stem}_<step>.pth (ReDegNet weights: the released "
                      "files or an f2n-train --method redegnet run)")


def to_network_range(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) float RGB in [0, 1] → (3, H, W) float32 in [-1, 1], ReDegNet's input convention
    (torchvision ``ToTensor`` then ``Normalize(0.5, 0.5)`` in the official code)."""
    return torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1) * 2 - 1


@dataclass(frozen=True)
class ReDegNets:
    """The three networks, in eval mode; they must agree on the crop size."""

    degnet: DegNet
    encoder: SynNetEncoder
    generator: SynNetGenerator
    source: str = ""  # where they were loaded from (the DegNet file), for reports

    def __post_init__(self) -> None:
        sizes = {self.degnet.size, self.encoder.size, self.generator.size}
        if len(sizes) != 1 or self.degnet.style_dim != self.generator.style_dim:
            raise ConfigError(f"the ReDegNet networks do not fit together: sizes {sorted(sizes)}, style widths "
                              f"{self.degnet.style_dim} (DegNet) and {self.generator.style_dim} (generator)")

    @property
    def crop(self) -> int:
        return self.degnet.size

    @classmethod
    def from_files(cls, degnet: Path, encoder: Path, generator: Path, device: str = "cpu") -> ReDegNets:
        """Each file loaded strictly as its network (a WeightsError names the wrong one)."""
        loaded = [load_network(load_state_dict_file(path), path, expected=WEIGHT_NAMES[role])[1].to(device)
                  for role, path in (("degnet", degnet), ("encoder", encoder), ("generator", generator))]
        return cls(*loaded, source=str(degnet))

    @classmethod
    def from_folder(cls, folder: Path, device: str = "cpu") -> ReDegNets:
        """The three networks of a folder: the released ``net_deg_init.pth`` … files, or the
        latest step of an ``f2n-train --method redegnet`` run (its ``checkpoints/`` folder or the run)."""
        folder = Path(folder)
        if (folder / "checkpoints").is_dir():
            folder = folder / "checkpoints"
        files = [_latest(folder, stem) for stem in RELEASED_STEMS]
        return cls.from_files(*files, device=device)


@dataclass(frozen=True)
class ReDegNetConfig:
    natural_pairs: int = 16  # K synthetic (LQ, HQ) natural pairs per photo
    crops_per_face: int = 2  # Ω samples per face (official validation: ceil(side / 256) * 2)

    def __post_init__(self) -> None:
        if self.natural_pairs < 1 or self.crops_per_face < 1:
            raise ConfigError(f"ReDegNet needs >= 1 natural pair and >= 1 crop per face, got "
                              f"{self.natural_pairs} and {self.crops_per_face}")


class NaturalBank:
    """A folder of HQ natural images (e.g. DIV2K/Flickr2K): random crops, read on demand."""

    def __init__(self, folder: Path | None) -> None:
        if folder is None:
            raise ConfigError("--adapt-method redegnet needs --natural-bank DIR, a folder of HQ natural images "
                              "(e.g. DIV2K/Flickr2K; see docs/redegnet.md)")
        if not Path(folder).is_dir():
            raise ConfigError(f"--natural-bank {folder} is not a folder")
        self.files = image_files(Path(folder))
        if not self.files:
            raise ConfigError(f"--natural-bank {folder} holds no images")
        self.folder = Path(folder)

    def crops(self, count: int, size: int, rng: np.random.Generator) -> np.ndarray:
        """(count, size, size, 3) float32 RGB in [0, 1]; images smaller than ``size`` are passed over."""
        out = []
        for index in rng.choice(len(self.files), count, replace=count > len(self.files)):
            rgb = read_image(self.files[index]).rgb
            height, width = rgb.shape[:2]
            if min(height, width) < size:
                continue
            y, x = int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
            out.append(rgb[y:y + size, x:x + size])
        if not out:
            raise ConfigError(f"--natural-bank {self.folder}: no image is at least {size}x{size} pixels")
        fitting = len(out)
        out += [out[index % fitting] for index in range(count - fitting)]  # some were too small: reuse the others
        return np.stack(out[:count])


def face_crop_pairs(aligned: np.ndarray, restored: np.ndarray, lq_side: float, crop: int, count: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray] | None:
    """(restored crops, LQ crops), each (count, crop, crop, 3), of one aligned face at the SR
    output's scale (official convention); None when the face is too small for one crop."""
    up = round(SCALE * lq_side)
    border = int(up * BORDER_FRACTION)
    if up - 2 * border < crop:
        return None
    faces = [cv2.resize(face, (up, up))[border:up - border, border:up - border] for face in (restored, aligned)]
    side = up - 2 * border
    offsets = rng.integers(0, side - crop + 1, size=(count, 2))
    restored_crops, lq_crops = ([face[y:y + crop, x:x + crop] for y, x in offsets] for face in faces)
    return np.stack(restored_crops), np.stack(lq_crops)


def _batch(crops: np.ndarray, device: str) -> torch.Tensor:
    return torch.stack([to_network_range(crop) for crop in crops]).to(device)


@torch.no_grad()
def synthesise_pairs(nets: ReDegNets, faces: FaceStageResult, bank: NaturalBank, config: ReDegNetConfig,
                     face_size: int, rng: np.random.Generator, device: str) -> PatchBatch | str:
    """The synthetic natural pairs of one photo, or why there are none."""
    used = [report for report in faces.faces if report.used]
    restored_crops, lq_crops = [], []
    for report, aligned, restored in zip(used, faces.aligned_faces, faces.restored_faces):
        affine = estimate_affine(report.landmarks, face_template(face_size))
        lq_side = face_size / float(np.sqrt(abs(np.linalg.det(affine[:, :2]))))  # aligned px per LQ px
        pair = face_crop_pairs(aligned, restored, lq_side, nets.crop, config.crops_per_face, rng)
        if pair is not None:
            restored_crops.append(pair[0])
            lq_crops.append(pair[1])
    if not restored_crops:
        return (f"no face is large enough for ReDegNet: a face needs about {nets.crop / SCALE / (1 - 2 * BORDER_FRACTION):.0f}"
                f" LQ pixels across for {nets.crop}² crops at x{SCALE}")
    omegas = nets.degnet(_batch(np.concatenate(restored_crops), device), _batch(np.concatenate(lq_crops), device))
    natural = bank.crops(config.natural_pairs, nets.crop, rng)
    omega = omegas[torch.as_tensor(rng.integers(0, len(omegas), config.natural_pairs), device=omegas.device)]
    rendered = nets.generator(omega, nets.encoder(_batch(natural, device)))
    rendered = (rendered.clamp(-1, 1) + 1) / 2
    lq = F.interpolate(rendered, scale_factor=1 / SCALE, mode="bilinear", align_corners=False).clamp(0, 1)
    target = torch.from_numpy(natural).permute(0, 3, 1, 2).contiguous()
    return PatchBatch(lq.float().cpu().contiguous(), target, torch.ones_like(target[:, :1]))


class ReDegNetAdaptation:
    """``--adapt-method redegnet``: faces give Ω, a natural-image bank gives the pairs."""

    name = "redegnet"

    def __init__(self, detector: Detector, prior: FacePrior | None, nets: ReDegNets, bank: NaturalBank, *,
                 config: ReDegNetConfig = ReDegNetConfig(), face: FaceStageConfig = FaceStageConfig(),
                 prior_problem: str = "", device: str = "cpu", loss_networks: LossNetworks | None = None) -> None:
        self.detector, self.prior, self.nets, self.bank = detector, prior, nets, bank
        self.config, self.face, self.device = config, face, device
        self.loss_networks = loss_networks  # the objective's critic and VGG-19, when it has those terms
        self.prior_problem = prior_problem or "no face prior"

    def __call__(self, model: nn.Module, rgb: np.ndarray, *, adapt: AdaptConfig, seed: int,
                 on_step: StepHook | None = None) -> MethodOutcome:
        if self.prior is None:
            return MethodOutcome(None, self.prior_problem, {})
        faces = run_face_stage(rgb, detector=self.detector, prior=self.prior, config=self.face, seed=seed)
        timings = {f"face.{step}": seconds for step, seconds in faces.timings.items()}
        if faces.patches is None:
            return MethodOutcome(None, faces.no_faces_reason, timings, faces)
        with timed(timings, "redegnet.synthesise"):
            pairs = synthesise_pairs(self.nets, faces, self.bank, self.config, self.face.face_size,
                                     np.random.default_rng(seed), self.device)
        if isinstance(pairs, str):
            return MethodOutcome(None, pairs, timings, faces)
        with timed(timings, "adapt"):
            result = run_inner_loop(model, pairs, adapt, on_step, loss_networks=self.loss_networks)
        timings.update({f"adapt.step_{i}": t for i, t in enumerate(result.step_seconds, start=1)})
        provenance = {
            "method": self.name, "steps": str(adapt.steps), "lr": repr(adapt.lr), "optimizer": adapt.optimizer,
            "precision": resolved_precision(adapt), "natural_bank": str(self.bank.folder), "natural_pairs": str(len(pairs)),
            "redegnet_weights": self.nets.source,
            "final_loss": repr(result.losses[-1]) if result.losses else "",
        }
        return MethodOutcome(result, "", timings, faces, provenance)

    def settings(self) -> dict[str, Any]:
        return {"method": self.name, "prior": self.prior.name if self.prior is not None else None,
                "natural_bank": str(self.bank.folder), "natural_pairs": self.config.natural_pairs,
                "crops_per_face": self.config.crops_per_face, "crop": self.nets.crop,
                "redegnet_weights": self.nets.source}


def load_redegnets(device: str = "cpu", folder: Path | None = None) -> ReDegNets:
    """The networks of ``folder`` (:meth:`ReDegNets.from_folder`), else the released ones from the
    weight cache (``f2n-models add`` puts them there: the official files have no stable URL)."""
    from f2n.weights.store import weight_path

    if folder is not None:
        return ReDegNets.from_folder(folder, device)
    return ReDegNets.from_files(*(weight_path(WEIGHT_NAMES[role]) for role in ("degnet", "encoder", "generator")),
                                device=device)
