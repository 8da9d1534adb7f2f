"""TensorFlow 1's ``resize_bicubic`` (``align_corners=False``, ``half_pixel_centers=False``)
in PyTorch: the resize the official MetaF2N graph feeds its MaskNet with.

That legacy resize samples output pixel ``o`` at input position ``o · in/out`` (no
half-pixel shift), uses the cubic convolution kernel with a = −0.75, takes the kernel's
weights from a 1024-entry table (so the fraction is rounded to 1/1024) and clamps the
four taps to the image. ``torch.nn.functional.interpolate(mode="bicubic")`` samples at
``(o + 0.5) · in/out − 0.5`` instead: for a x4 upsampling the two differ by 0.375 input
pixels, which a MaskNet trained on one notices on the other.
"""

import torch

CUBIC_A = -0.75
TABLE_SIZE = 1024  # TF's coefficient table: fractions are rounded to 1/1024


def _cubic(distance: torch.Tensor) -> torch.Tensor:
    d = distance.abs()
    near = ((CUBIC_A + 2) * d - (CUBIC_A + 3)) * d * d + 1
    far = ((CUBIC_A * d - 5 * CUBIC_A) * d + 8 * CUBIC_A) * d - 4 * CUBIC_A
    return torch.where(d <= 1, near, torch.where(d < 2, far, torch.zeros_like(d)))


def _interpolation_matrix(in_size: int, out_size: int, dtype: torch.dtype) -> torch.Tensor:
    """(out, in) matrix M with out = M @ in along one axis."""
    position = torch.arange(out_size, dtype=torch.float64) * (in_size / out_size)
    start = position.floor()
    fraction = torch.round((position - start) * TABLE_SIZE) / TABLE_SIZE
    matrix = torch.zeros(out_size, in_size, dtype=torch.float64)
    rows = torch.arange(out_size)
    for tap in (-1, 0, 1, 2):
        index = (start.long() + tap).clamp(0, in_size - 1)
        matrix.index_put_((rows, index), _cubic(fraction - tap), accumulate=True)
    return matrix.to(dtype)


def resize_bicubic_tf1(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, *size), as ``tf.compat.v1.image.resize_bicubic(align_corners=False)``;
    not clamped, like TF's."""
    height, width = images.shape[-2:]
    rows = _interpolation_matrix(height, size[0], images.dtype).to(images.device)
    cols = _interpolation_matrix(width, size[1], images.dtype).to(images.device)
    return torch.einsum("oh,nchw,pw->ncop", rows, images, cols)
