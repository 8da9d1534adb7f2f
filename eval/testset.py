"""Test-set builder: HQ photos with faces -> (LQ, GT) pairs made with the Real-ESRGAN
degradation (``iid``) or MetaF2N's out-of-distribution variant (``ood``), x4.

Layout of a set folder::

    manifest.json        kind, seed, scale, max_side and the image names
    gt/NAME.png          HQ photo (optionally shrunk to max_side), cropped to a multiple of scale
    lq/NAME.png          its degradation, 1/scale the size
    params/NAME.json     the seed and every parameter drawn for that image

Each image's degradation is drawn from a seed derived from (set seed, image name), so adding
a photo changes no other pair, and building twice with one seed gives identical files.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import torch

from f2n.errors import ConfigError, InputImageError
from f2n.fileio import write_text_atomic
from f2n.runtime import IMAGE_SUFFIXES, image_files, read_image, write_image
from f2n.training.degradations import DegradationConfig, degrade, sample_params

Kind = Literal["iid", "ood"]
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class EvalPair:
    name: str
    lq: Path
    gt: Path
    params: Path


def list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise InputImageError(f"HQ folder not found: {folder}")
    images = image_files(folder)
    if not images:
        raise InputImageError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return images


def image_seed(seed: int, name: str) -> np.random.SeedSequence:
    """Independent of the other images in the folder and of their order."""
    return np.random.SeedSequence([seed, zlib.crc32(name.encode("utf-8"))])


def prepare_gt(rgb: np.ndarray, *, scale: int, max_side: int | None) -> np.ndarray:
    """Shrink (area) so the long side is at most ``max_side``, then crop to a multiple of ``scale``."""
    if max_side is not None and max(rgb.shape[:2]) > max_side:
        factor = max_side / max(rgb.shape[:2])
        size = (round(rgb.shape[1] * factor), round(rgb.shape[0] * factor))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    h, w = (rgb.shape[0] // scale) * scale, (rgb.shape[1] // scale) * scale
    # Quantise now: the GT on disk is 8-bit, and the LQ must come from exactly that GT.
    return np.round(np.clip(rgb[:h, :w], 0, 1) * 255).astype(np.float32) / 255


def build_test_set(hq_dir: Path, out_dir: Path, *, kind: Kind, seed: int, scale: int = 4,
                   max_side: int | None = None, config: DegradationConfig = DegradationConfig()) -> list[EvalPair]:
    """Degrade every photo of ``hq_dir`` into ``out_dir``; returns the pairs written."""
    if kind not in ("iid", "ood"):
        raise ConfigError(f"test-set kind is {kind!r}, expected 'iid' or 'ood'")
    if max_side is not None and max_side < 16 * scale:
        raise ConfigError(f"max_side is {max_side}, expected at least {16 * scale}")
    sources = list_images(hq_dir)
    for sub in ("gt", "lq", "params"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    pairs = []
    for source in sources:
        name = source.stem
        gt = prepare_gt(read_image(source).rgb, scale=scale, max_side=max_side)
        params = sample_params(np.random.default_rng(image_seed(seed, name)), config=config, ood=kind == "ood")
        hq = torch.from_numpy(gt).permute(2, 0, 1)[None]
        lq = degrade(hq, params, scale=scale)[0].permute(1, 2, 0).numpy()
        pair = EvalPair(name, out_dir / "lq" / f"{name}.png", out_dir / "gt" / f"{name}.png",
                        out_dir / "params" / f"{name}.json")
        write_image(pair.gt, gt)
        write_image(pair.lq, lq)
        record = {"image": source.name, "kind": kind, "seed": seed, "scale": scale, "params": params.to_dict()}
        write_text_atomic(pair.params, json.dumps(record, indent=2, sort_keys=True) + "\n")
        pairs.append(pair)
    manifest = {"kind": kind, "seed": seed, "scale": scale, "max_side": max_side, "images": [p.name for p in pairs]}
    write_text_atomic(out_dir / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return pairs


def load_test_set(set_dir: Path) -> tuple[dict, list[EvalPair]]:
    """(manifest, pairs) of a folder written by ``build_test_set``."""
    path = set_dir / MANIFEST
    if not path.is_file():
        raise InputImageError(f"{set_dir} is not a test set: {MANIFEST} not found (make one with 'f2n-eval build')")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    pairs = [EvalPair(n, set_dir / "lq" / f"{n}.png", set_dir / "gt" / f"{n}.png", set_dir / "params" / f"{n}.json")
             for n in manifest["images"]]
    missing = [str(p) for pair in pairs for p in (pair.lq, pair.gt) if not p.is_file()]
    if missing:
        raise InputImageError(f"test set {set_dir} is incomplete: missing {missing[0]} (and {len(missing) - 1} more)")
    return manifest, pairs
