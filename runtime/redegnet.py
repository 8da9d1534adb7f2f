"""ReDegNet adaptation (Li et al., ECCV 2022) — placeholder being written."""

import numpy as np
import torch


def to_network_range(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) float RGB in [0, 1] → (3, H, W) float32 in [-1, 1], ReDegNet's input convention
    (torchvision ``ToTensor`` then ``Normalize(0.5, 0.5)`` in the official code)."""
    return torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1) * 2 - 1
