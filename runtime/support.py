"""CMDSR's support set: LR patches of the photo itself, preferring textured ones.

A flat patch (sky, wall) says little about blur or noise and nothing about how edges
were degraded, so candidates are scored by gradient energy (mean |∂x| + |∂y| of the
luminance) and the most textured ones are kept; patches under ``min_energy`` are
skipped unless the whole photo is flat. Candidate positions are drawn from a seeded
generator, so the same photo and seed give the same support set.
"""

from dataclasses import dataclass

import numpy as np
import torch

from f2n.errors import ConfigError

DEFAULT_PATCH = 32  # LR pixels: large enough for a blur kernel and JPEG blocks, small enough for many per photo
DEFAULT_COUNT = 16
DEFAULT_CANDIDATES = 4  # random candidates drawn per kept patch
DEFAULT_MIN_ENERGY = 0.01  # mean |gradient| in [0, 1] units; flat sky/wall scores below it


@dataclass(frozen=True)
class SupportConfig:
    patch: int = DEFAULT_PATCH
    count: int = DEFAULT_COUNT
    candidates: int = DEFAULT_CANDIDATES
    min_energy: float = DEFAULT_MIN_ENERGY

    def __post_init__(self) -> None:
        if self.patch < 4:
            raise ConfigError(f"support patch size must be >= 4 LR pixels, got {self.patch}")
        if self.count < 1:
            raise ConfigError(f"support set size must be >= 1, got {self.count}")
        if self.candidates < 1:
            raise ConfigError(f"support candidates per patch must be >= 1, got {self.candidates}")
        if not self.min_energy >= 0:
            raise ConfigError(f"support min_energy must be >= 0, got {self.min_energy}")


def gradient_energy(rgb: np.ndarray) -> np.ndarray:
    """(H, W) |∂x| + |∂y| of the luminance (last row/column repeat the neighbour's difference)."""
    gray = rgb[:, :, :3].astype(np.float32).mean(axis=2)
    dx = np.abs(np.diff(gray, axis=1, append=gray[:, -1:]))
    dy = np.abs(np.diff(gray, axis=0, append=gray[-1:, :]))
    return dx + dy


def support_boxes(rgb: np.ndarray, config: SupportConfig, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """((n, 2) top-left corners, side) of the support patches, 1 <= n <= ``config.count``,
    all inside the photo. A photo smaller than ``config.patch`` gets patches of its shorter side."""
    height, width = rgb.shape[:2]
    side = min(config.patch, height, width)
    draws = config.count * config.candidates
    corners = np.stack([rng.integers(0, height - side + 1, draws), rng.integers(0, width - side + 1, draws)], axis=1)
    # Box sums of the energy map from its integral image: O(1) per candidate.
    integral = np.pad(gradient_energy(rgb), ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    top, left = corners[:, 0], corners[:, 1]
    sums = (integral[top + side, left + side] - integral[top, left + side]
            - integral[top + side, left] + integral[top, left])
    energy = sums / (side * side)
    order = np.argsort(-energy, kind="stable")
    textured = order[energy[order] >= config.min_energy]
    keep = (textured if textured.size else order)[: config.count]
    return corners[keep], side


def sample_support(rgb: np.ndarray, config: SupportConfig, seed: int) -> torch.Tensor:
    """(n, 3, side, side) float32 support patches of an (H, W, 3[+1]) photo in [0, 1]."""
    corners, side = support_boxes(rgb, config, np.random.default_rng(seed))
    patches = np.stack([rgb[top : top + side, left : left + side, :3] for top, left in corners])
    return torch.from_numpy(np.ascontiguousarray(patches, dtype=np.float32)).permute(0, 3, 1, 2).contiguous()
