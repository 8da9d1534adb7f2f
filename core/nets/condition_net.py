"""CMDSR's ConditionNet (Hu et al., 2021): reads a support set of one photo's own LR
patches and modulates the SR network's conv weights channel-wise.

Each support patch goes through a few 3x3 conv + LeakyReLU layers and a global average
pool; the mean over the support set is the photo's condition vector. A linear head maps
it to one coefficient γ[o] per output channel of every modulated conv, and
W′[o] = W[o]·(1 + γ[o]) (biases unchanged). The head starts at zero, so an untrained
ConditionNet leaves θ′ = θ exactly.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

LEAKY_SLOPE = 0.2  # as in the RRDBNet it conditions
DEFAULT_MODULATE = ("body.",)  # the RRDB trunk


@dataclass(frozen=True)
class ConditionNetConfig:
    """``modulate``: name prefixes of the RRDBNet conv weights to modulate (canonical names)."""

    num_feat: int = 64
    num_layers: int = 3
    modulate: tuple[str, ...] = DEFAULT_MODULATE

    def __post_init__(self) -> None:
        if self.num_feat < 1 or self.num_layers < 1:
            raise ValueError(f"ConditionNet needs num_feat >= 1 and num_layers >= 1, got {self.num_feat}, {self.num_layers}")
        if not self.modulate:
            raise ValueError("ConditionNet needs at least one conv name prefix to modulate")


def modulated_convs(model: nn.Module, prefixes: Sequence[str] = DEFAULT_MODULATE) -> tuple[tuple[str, int], ...]:
    """(weight name, output channels) of every conv of ``model`` whose name starts with one
    of ``prefixes``, in the model's parameter order."""
    return tuple((name, int(param.shape[0])) for name, param in model.named_parameters()
                 if param.ndim == 4 and name.endswith(".weight") and name.startswith(tuple(prefixes)))


class ConditionNet(nn.Module):
    def __init__(self, convs: Sequence[tuple[str, int]], config: ConditionNetConfig = ConditionNetConfig()) -> None:
        super().__init__()
        if not convs:
            raise ValueError(f"no conv of the SR network matches the prefixes {list(config.modulate)}")
        self.config = config
        self.convs = tuple(convs)
        layers: list[nn.Module] = []
        channels = 3
        for _ in range(config.num_layers):
            layers += [nn.Conv2d(channels, config.num_feat, 3, 1, 1), nn.LeakyReLU(LEAKY_SLOPE)]
            channels = config.num_feat
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(config.num_feat, sum(out for _, out in self.convs))
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, support: torch.Tensor) -> torch.Tensor:
        """(N, 3, p, p) support patches -> (C,) coefficients γ, all modulated convs concatenated."""
        features = F.adaptive_avg_pool2d(self.body(support), 1).flatten(1)  # (N, num_feat)
        return self.head(features.mean(dim=0))

    def coefficients(self, support: torch.Tensor) -> dict[str, torch.Tensor]:
        """γ per modulated conv weight name, each of shape (out_channels,)."""
        gamma = self(support)
        return dict(zip((name for name, _ in self.convs), gamma.split([out for _, out in self.convs]), strict=True))


def modulate(weights: Mapping[str, torch.Tensor], gamma: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """θ′: W[o]·(1 + γ[o]) for every weight named in ``gamma``, the others unchanged."""
    return {name: value * (1 + gamma[name]).view(-1, 1, 1, 1) if name in gamma else value
            for name, value in weights.items()}


def modulated_weights(model: nn.Module, condition_net: ConditionNet, support: torch.Tensor) -> dict[str, torch.Tensor]:
    """θ′ of ``model`` for the photo whose LR patches are ``support``, as a full weight dict
    (canonical names) for ``torch.func.functional_call`` or ``engine.set_weights``.
    Differentiable in the ConditionNet (and in θ when it requires grad)."""
    return modulate(dict(model.named_parameters()), condition_net.coefficients(support))
