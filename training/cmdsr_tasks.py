"""CMDSR training tasks. A task is one sampled degradation applied to one HQ natural crop:
its support set is textured LR patches of the degraded crop (chosen as at run time,
:func:`f2n.runtime.support.support_boxes`), its queries are other LR/HR patch pairs of the
same crop, so the ConditionNet learns to read a degradation from one part of an image and
the modulated network is scored on another.

Task ``index`` of step ``step`` is drawn from ``numpy.random.default_rng([seed, step, index])``
(as MetaF2N's tasks): a resumed run repeats the stream.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from f2n.runtime import SCALE, SupportConfig, support_boxes
from f2n.training.config import CmdsrConfig, DataConfig
from f2n.training.data import load_rgb, random_crop
from f2n.training.degradations import DegradationParams, degrade, sample_params

QUERY_TRIES = 32  # draws per query patch to miss every support patch before taking the last one


@dataclass(frozen=True)
class CmdsrTask:
    support: torch.Tensor  # (S, 3, p, p) LR
    query_lq: torch.Tensor  # (Q, 3, q, q) LR
    query_hq: torch.Tensor  # (Q, 3, 4q, 4q) HR, the same places

    def to(self, device: torch.device | str) -> "CmdsrTask":
        return CmdsrTask(self.support.to(device), self.query_lq.to(device), self.query_hq.to(device))


def make_cmdsr_task(hq: torch.Tensor, params: DegradationParams, config: CmdsrConfig,
                    rng: np.random.Generator) -> CmdsrTask:
    """One task from an HQ crop (3, H, W), H and W multiples of 4, under one degradation."""
    lq = degrade(hq[None], params, scale=SCALE)[0]
    support_config = SupportConfig(patch=config.support_patch, count=config.support_count)
    corners, side = support_boxes(lq.permute(1, 2, 0).numpy(), support_config, rng)
    support = torch.stack([lq[:, top : top + side, left : left + side] for top, left in corners])
    size = config.query_patch
    queries = query_corners(tuple(lq.shape[-2:]), size, config.query_count, corners, side, rng)
    query_lq = torch.stack([lq[:, top : top + size, left : left + size] for top, left in queries])
    query_hq = torch.stack([hq[:, SCALE * top : SCALE * (top + size), SCALE * left : SCALE * (left + size)]
                            for top, left in queries])
    return CmdsrTask(support, query_lq, query_hq)


def query_corners(shape: tuple[int, int], size: int, count: int, support: np.ndarray, side: int,
                  rng: np.random.Generator) -> list[tuple[int, int]]:
    """Top-left corners of ``count`` size x size query patches, each drawn until it misses
    every support patch (``support``: their corners, ``side``: their size); on a crop too
    small for that, the last draw is kept."""
    height, width = shape
    corners = []
    for _ in range(count):
        for _ in range(QUERY_TRIES):
            top, left = int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
            overlaps = ((top < support[:, 0] + side) & (support[:, 0] < top + size)
                        & (left < support[:, 1] + side) & (support[:, 1] < left + size))
            if not overlaps.any():
                break
        corners.append((top, left))
    return corners


@dataclass(frozen=True)
class CmdsrTaskSampler:
    images: tuple[Path, ...]
    data: DataConfig
    config: CmdsrConfig
    seed: int

    def task(self, step: int, index: int) -> CmdsrTask:
        rng = np.random.default_rng([self.seed, step, index])
        image = load_rgb(self.images[rng.integers(len(self.images))], self.data.outer_patch)
        crop, _, _ = random_crop(image, self.data.outer_patch, rng)
        return make_cmdsr_task(crop, sample_params(rng, ood=self.data.ood), self.config, rng)
