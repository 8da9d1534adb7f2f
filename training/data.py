"""Training images: folders of HQ aligned faces and HQ natural images, random crops.
No paths are baked in; the folders come from the config or the command line."""

from pathlib import Path

import numpy as np
import torch

from f2n.errors import ConfigError, InputImageError
from f2n.runtime import IMAGE_SUFFIXES, image_files, read_image


def list_images(folder: Path | None, what: str) -> tuple[Path, ...]:
    """The image files directly inside ``folder``, sorted (a stable order makes task seeds reproducible)."""
    if folder is None:
        raise ConfigError(f"no {what} folder given, expected a folder of images")
    if not Path(folder).is_dir():
        raise ConfigError(f"{what} folder {folder} does not exist, expected a folder of images")
    files = tuple(image_files(Path(folder)))
    if not files:
        raise ConfigError(f"{what} folder {folder} holds no images, expected files ending in {', '.join(IMAGE_SUFFIXES)}")
    return files


def load_rgb(path: Path, min_size: int) -> torch.Tensor:
    """(3, H, W) float32 in [0, 1]; images smaller than ``min_size`` on a side are refused."""
    rgb = read_image(path).rgb
    height, width = rgb.shape[:2]
    if min(height, width) < min_size:
        raise InputImageError(f"training image {path} is {width}x{height}, expected at least {min_size}x{min_size}")
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)


def random_crop(image: torch.Tensor, size: int, rng: np.random.Generator, *, multiple: int = 1) -> tuple[torch.Tensor, int, int]:
    """A size x size crop of (C, H, W) at a random offset that is a multiple of ``multiple``;
    returns (crop, top, left)."""
    height, width = image.shape[-2:]
    top = int(rng.integers(0, (height - size) // multiple + 1)) * multiple
    left = int(rng.integers(0, (width - size) // multiple + 1)) * multiple
    return image[..., top : top + size, left : left + size], top, left
