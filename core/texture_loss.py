"""A texture term that matches distributions, not pixels: the sliced Wasserstein distance
between two sets of high-band patches (GPDM, Elnekave & Weiss, ECCV 2022). Two images with the
same texture at other places score ~0, a blurred one scores high: unlike an L1 toward restored
faces, it does not reward averaging detail away (issue 28, docs/adaptation.md)."""

import torch
import torch.nn.functional as F

from f2n.inner_loop import high_band

PATCH = 7  # output px: GPDM's patch side
STRIDE = 2  # output px between patches: a quarter of the stride-1 patches, the same statistics
DIRECTIONS = 64  # random projections


def random_directions(dim: int, count: int = DIRECTIONS, seed: int = 0) -> torch.Tensor:
    """(dim, count) seeded random unit vectors: the slices."""
    directions = torch.randn(dim, count, generator=torch.Generator().manual_seed(seed))
    return directions / directions.norm(dim=0, keepdim=True)


def patch_set(images: torch.Tensor, size: int = PATCH, stride: int = STRIDE) -> torch.Tensor:
    """Every ``size``² patch of ``images`` (N, C, H, W) at ``stride``, as rows (N·L, C·size²)."""
    columns = F.unfold(images, size, stride=stride)  # (N, C·size², L)
    return columns.transpose(1, 2).reshape(-1, columns.shape[1])


def sliced_wasserstein(x: torch.Tensor, y: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Mean over ``directions`` (d, k) of the 1-Wasserstein distance between the projections of
    the row sets ``x`` (n, d) and ``y`` (m, d): sorted projections compared quantile by quantile
    (the larger set read at the smaller one's quantiles when n ≠ m)."""
    px, py = (torch.sort(s @ directions.to(s), dim=0).values for s in (x, y))
    if len(px) != len(py):
        small, large = (px, py) if len(px) < len(py) else (py, px)
        at = ((torch.arange(len(small), device=x.device) + 0.5) * len(large) / len(small)).long()
        px, py = small, large[at.clamp(max=len(large) - 1)]
    return (px - py).abs().mean()


def texture_distance(output: torch.Tensor, reference: torch.Tensor, directions: torch.Tensor,
                     sigma: float) -> torch.Tensor:
    """The sliced Wasserstein distance between the high-band (``sigma`` px) patch sets of
    ``output`` and ``reference`` (N, C, H, W each; the counts and sizes may differ)."""
    return sliced_wasserstein(patch_set(high_band(output, sigma)), patch_set(high_band(reference, sigma)), directions)
