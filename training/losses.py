"""Loss terms of meta-training. Images are (N, 3, H, W) in [0, 1]; every loss returns a
0-d tensor averaged over the batch. The GAN losses are in :mod:`f2n.gan_loss` (the runtime's
texture critic uses them too)."""

import torch
import torch.nn.functional as F

_LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def mask_regularisation(weight: torch.Tensor) -> torch.Tensor:
    """‖m − 1‖₂ per sample, averaged: keeps MaskNet from switching every pixel off."""
    return torch.linalg.vector_norm((weight - 1.0).flatten(1), dim=1).mean()


def detail_mask(image: torch.Tensor, threshold: float) -> torch.Tensor:
    """(N, 1, H, W) float mask of pixels whose |Laplacian| of the luma exceeds ``threshold``."""
    luma = image.mean(dim=1, keepdim=True)
    kernel = _LAPLACIAN.to(image)[None, None]
    response = F.conv2d(F.pad(luma, (1, 1, 1, 1), mode="replicate"), kernel)
    return (response.abs() > threshold).to(image.dtype)


def similarity_graph(image: torch.Tensor, patch: int, window: int, h: float) -> torch.Tensor:
    """exp(−‖p_i − p_j‖² / h) between the patch at each pixel i and the patches at its
    window × window neighbours j: (N, window², H, W). ‖·‖² is the mean over the patch's
    elements, so ``h`` does not depend on the patch size. Borders are replicate-padded."""
    n, c, height, width = image.shape
    half = window // 2
    padded = F.pad(image, (half, half, half, half), mode="replicate")
    neighbours = F.unfold(padded, window).view(n, c, window * window, height, width)
    squared = (neighbours - image[:, :, None]).square().mean(dim=1)  # (N, window², H, W)
    # Summing pixel differences over a patch × patch box gives the patch distance.
    pad = patch // 2
    boxed = F.avg_pool2d(
        F.pad(squared, (pad, pad, pad, pad), mode="replicate"), patch, stride=1
    )
    return torch.exp(-boxed / h)


def self_similarity_loss(
    sr: torch.Tensor, hr: torch.Tensor, *, patch: int = 3, window: int = 5, h: float = 0.1, threshold: float = 0.05
) -> torch.Tensor:
    """Mean |S_SR − S_HR| over the detailed pixels of ``hr`` (zero when it has none)."""
    mask = detail_mask(hr, threshold)
    difference = (similarity_graph(sr, patch, window, h) - similarity_graph(hr, patch, window, h)).abs()
    count = mask.sum() * difference.shape[1]
    return (difference * mask).sum() / count.clamp_min(1.0)
