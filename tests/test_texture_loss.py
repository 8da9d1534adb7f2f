"""The sliced Wasserstein texture term (f2n.texture_loss): it compares patch distributions, so the
same texture elsewhere scores ~0, a blurred copy scores high, and its gradient puts texture back."""

import torch

from f2n import inner_loop
from f2n.texture_loss import patch_set, random_directions, sliced_wasserstein, texture_distance


def texture(seed: int, size: int = 48) -> torch.Tensor:
    """A stationary texture: coloured noise with some spatial correlation."""
    noise = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed))
    return 0.5 + 0.8 * (noise - inner_loop.gaussian_lowpass(noise, 4.0))


def test_a_shuffled_patch_set_is_at_distance_zero_a_blurred_one_is_not() -> None:
    rows = patch_set(inner_loop.high_band(texture(0), 2.0))
    directions = random_directions(rows.shape[1], seed=1)
    shuffled = rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(2))]
    assert float(sliced_wasserstein(rows, shuffled, directions)) < 1e-7
    same_texture_elsewhere = texture_distance(texture(0), texture(3), directions, 2.0)
    blurred = texture_distance(texture(0), inner_loop.gaussian_lowpass(texture(0), 1.5), directions, 2.0)
    assert float(blurred) > 4 * float(same_texture_elsewhere) > 0
    # sets of other sizes are compared quantile by quantile: a crop of the texture is still close
    crop = texture_distance(texture(0), texture(3)[..., :32, :32], directions, 2.0)
    assert float(crop) < 0.5 * float(blurred)


def test_its_gradient_moves_a_blurred_output_toward_the_texture() -> None:
    reference = texture(0)
    output = inner_loop.gaussian_lowpass(texture(5), 1.5).requires_grad_(True)
    directions = random_directions(3 * 7 * 7, seed=0)
    energy = lambda x: float(inner_loop.high_band(x.detach(), 2.0).pow(2).mean())  # noqa: E731
    start_distance, start_energy = float(texture_distance(output.detach(), reference, directions, 2.0)), energy(output)
    optimizer = torch.optim.Adam([output], lr=3e-3)
    for _ in range(60):
        optimizer.zero_grad()
        texture_distance(output, reference, directions, 2.0).backward()
        optimizer.step()
    assert float(texture_distance(output, reference, directions, 2.0)) < 0.5 * start_distance
    assert energy(output) > 2 * start_energy  # the high band came back
    assert energy(output) < 2 * energy(reference)  # toward the reference's, not beyond it


def test_directions_are_seeded_unit_slices() -> None:
    a, b = random_directions(147, seed=4), random_directions(147, seed=4)
    assert torch.equal(a, b) and not torch.equal(a, random_directions(147, seed=5))
    torch.testing.assert_close(a.norm(dim=0), torch.ones(a.shape[1]))
