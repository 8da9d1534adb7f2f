import torch
import torch.nn.functional as F

from f2n.gan_loss import discriminator_gan_loss, generator_gan_loss
from f2n.inner_loop import masked_l1
from f2n.training.losses import (
    detail_mask,
    mask_regularisation,
    self_similarity_loss,
    similarity_graph,
)


def _naive_graph(image: torch.Tensor, patch: int, window: int, h: float) -> torch.Tensor:
    """Direct double loop over pixels and neighbours (replicate borders)."""
    n, c, height, width = image.shape
    pad = patch // 2 + window // 2
    padded = F.pad(image, (pad, pad, pad, pad), mode="replicate")

    def patch_at(y: int, x: int) -> torch.Tensor:
        y, x = y + pad, x + pad
        return padded[:, :, y - patch // 2 : y + patch // 2 + 1, x - patch // 2 : x + patch // 2 + 1]

    out = torch.zeros(n, window * window, height, width, dtype=image.dtype)
    for y in range(height):
        for x in range(width):
            for k in range(window * window):
                dy, dx = k // window - window // 2, k % window - window // 2
                # Neighbour coordinates are clamped like a replicate pad of the image.
                ny, nx = min(max(y + dy, 0), height - 1), min(max(x + dx, 0), width - 1)
                distance = (patch_at(y, x) - patch_at(ny, nx)).square().mean(dim=(1, 2, 3))
                out[:, k, y, x] = torch.exp(-distance / h)
    return out


def test_similarity_graph_matches_naive_loops_away_from_border() -> None:
    torch.manual_seed(0)
    image = torch.rand(2, 3, 9, 9, dtype=torch.float64)
    fast = similarity_graph(image, patch=3, window=3, h=0.2)
    naive = _naive_graph(image, patch=3, window=3, h=0.2)
    # Interior pixels (whose patches never touch the padding) must agree exactly.
    torch.testing.assert_close(fast[..., 2:-2, 2:-2], naive[..., 2:-2, 2:-2])
    assert fast.shape == (2, 9, 9, 9)


def test_self_similarity_loss_zero_for_identical_and_positive_for_blurred() -> None:
    torch.manual_seed(1)
    hr = torch.rand(1, 3, 32, 32)
    blurred = F.avg_pool2d(F.pad(hr, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    assert self_similarity_loss(hr, hr).item() == 0.0
    assert self_similarity_loss(blurred, hr).item() > 0.01


def test_self_similarity_loss_ignores_flat_regions_and_gives_gradients() -> None:
    flat = torch.full((1, 3, 16, 16), 0.5)
    assert detail_mask(flat, 0.05).sum().item() == 0.0
    sr = torch.rand(1, 3, 16, 16, requires_grad=True)
    assert self_similarity_loss(sr, flat).item() == 0.0
    hr = torch.rand(1, 3, 16, 16)
    self_similarity_loss(sr, hr).backward()
    assert sr.grad is not None and sr.grad.abs().sum().item() > 0


def test_masked_l1_and_mask_regularisation_values() -> None:
    output = torch.zeros(2, 3, 4, 4)
    target = torch.ones(2, 3, 4, 4)
    weight = torch.zeros(2, 1, 4, 4)
    weight[:, :, :2] = 1.0  # half of the pixels count
    assert masked_l1(output, target, weight).item() == 0.5
    # ‖0 − 1‖₂ over 16 pixels is 4 for every sample.
    assert mask_regularisation(torch.zeros(2, 1, 4, 4)).item() == 4.0
    assert mask_regularisation(torch.ones(2, 1, 4, 4)).item() == 0.0


def test_gan_losses_prefer_the_right_side() -> None:
    confident_real = torch.full((1, 1, 8, 8), 5.0)
    confident_fake = torch.full((1, 1, 8, 8), -5.0)
    assert generator_gan_loss(confident_real) < generator_gan_loss(confident_fake)
    assert discriminator_gan_loss(confident_real, confident_fake) < discriminator_gan_loss(confident_fake, confident_real)
