"""The images of one ``f2n-train --method redegnet`` step, (B, 3, size, size) in [−1, 1], drawn from
a generator seeded by the seed, the step and the worker (each worker its own samples).

* :func:`redeg_batch`, for DegNet and SynNet: real (pseudo-HQ, LQ) face pair crops, and one
  synthetic degradation applied alike to that HQ face crop and to an HQ natural crop;
* :func:`sr_batch`, for F2N-ESRGAN: another HQ natural crop, its unsharp-masked copy (θ's target),
  and the noise θ's input gets (the official: with probability 0.4, σ ∈ {0, 0.01, …, 0.2})."""

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from f2n.errors import ConfigError
from f2n.runtime.redegnet import BORDER_FRACTION
from f2n.training.data import list_images, load_rgb, random_crop
from f2n.training.degradations import degrade, sample_params
from f2n.training.sharpen import usm_sharpen

NOISE_PROBABILITY = 0.4  # redeg_model.py: `random.random() > 0.6`
NOISE_SIGMA_STEPS = 20  # σ = randint(0, 20) / 100


def face_pairs(folder: Path) -> tuple[tuple[Path, Path], ...]:
    """(pseudo-HQ, LQ) file pairs of ``folder``/pseudo_hq and ``folder``/lq, matched by name."""
    hq, lq = (list_images(Path(folder) / sub, f"face pair {sub}") for sub in ("pseudo_hq", "lq"))
    lq_by_name = {path.name: path for path in lq}
    matched = tuple((path, lq_by_name[path.name]) for path in hq if path.name in lq_by_name)
    if not matched:
        raise ConfigError(f"{folder}: no file name is in both pseudo_hq/ and lq/")
    return matched


def redeg_batch(pairs: tuple[tuple[Path, Path], ...], naturals: tuple[Path, ...], rng: np.random.Generator,
                batch_size: int, size: int) -> dict[str, torch.Tensor]:
    """Real face pairs (``face_hq``, ``face_lq``), natural crops (``natural_hq``) and their shared
    synthetic degradation (``face_syn_lq``, ``natural_syn_lq``)."""
    face_hq, face_lq, natural_hq = [], [], []
    for _ in range(batch_size):
        hq_path, lq_path = pairs[int(rng.integers(len(pairs)))]
        hq, lq = load_rgb(hq_path, size), load_rgb(lq_path, size)
        if hq.shape != lq.shape:
            raise ConfigError(f"face pair {hq_path.name}: pseudo-HQ {tuple(hq.shape)} and LQ {tuple(lq.shape)} differ")
        border = int(hq.shape[-1] * BORDER_FRACTION)
        y, x = (int(rng.integers(border, max(border, length - border - size) + 1)) for length in hq.shape[-2:])
        flip = rng.uniform() < 0.5
        for image, out in ((hq, face_hq), (lq, face_lq)):
            crop = image[:, y:y + size, x:x + size]
            out.append(crop.flip(-1) if flip else crop)
        natural_hq.append(random_crop(load_rgb(naturals[int(rng.integers(len(naturals)))], size), size, rng)[0])
    face_hq_t, natural_hq_t = torch.stack(face_hq), torch.stack(natural_hq)
    synthetic = degrade(torch.cat([natural_hq_t, face_hq_t]), sample_params(rng), scale=4)
    synthetic = F.interpolate(synthetic, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
    natural_syn, face_syn = synthetic.chunk(2)
    batch = {"face_hq": face_hq_t, "face_lq": torch.stack(face_lq), "face_syn_lq": face_syn,
             "natural_hq": natural_hq_t, "natural_syn_lq": natural_syn}
    return {name: image * 2 - 1 for name, image in batch.items()}


def sr_batch(naturals: tuple[Path, ...], rng: np.random.Generator, batch_size: int, size: int) -> dict[str, torch.Tensor]:
    """``sr_hq`` (the D's real images), ``sr_target`` (its USM-sharpened copy) and, in 4 steps of 10,
    ``sr_noise`` (added to SynNet's rendering before θ sees it, then clamped)."""
    hq = [random_crop(load_rgb(naturals[int(rng.integers(len(naturals)))], size), size, rng)[0]
          for _ in range(batch_size)]
    batch = {"sr_hq": torch.stack(hq) * 2 - 1, "sr_target": torch.stack([usm_sharpen(i, rng) for i in hq]) * 2 - 1}
    if rng.uniform() < NOISE_PROBABILITY:
        sigma = int(rng.integers(0, NOISE_SIGMA_STEPS + 1)) / 100
        batch["sr_noise"] = torch.from_numpy(rng.standard_normal((batch_size, 3, size, size), dtype=np.float32)) * sigma
    return batch
