"""BasicSR's ``PerceptualLoss`` on torchvision's VGG-19 ``features``: L1 of features taken before
their ReLU and of their Gram matrices, each layer weighted, ImageNet-normalised input. No range
conversion: the caller feeds images in the range its recipe uses (Real-ESRGAN's fine-tuning and
the adaptation's perceptual term: [0, 1]; ReDegNet's official code feeds its [−1, 1] images as
they are, and so does f2n's ReDegNet training). The feature stack itself is loaded by
:func:`f2n.weights.loss_networks.vgg19_features`."""

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

VGG19_CONVS = {"conv1_2": 2, "conv2_2": 7, "conv3_4": 16, "conv4_4": 25, "conv5_4": 34}  # index in vgg19.features
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PerceptualStyle(nn.Module):
    """(perceptual, style) terms, unscaled by their loss weights; ``layer_weights`` by conv name."""

    def __init__(self, features: nn.Sequential, layer_weights: Mapping[str, float]) -> None:
        super().__init__()
        unknown = set(layer_weights) - set(VGG19_CONVS)
        if unknown:
            raise ValueError(f"unknown VGG-19 layers {sorted(unknown)}, expected some of {list(VGG19_CONVS)}")
        self.features = features
        self.layer_weights = {VGG19_CONVS[name]: weight for name, weight in layer_weights.items()}
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def _features(self, image: torch.Tensor) -> list[torch.Tensor]:
        x, out, last = (image - self.mean) / self.std, [], max(self.layer_weights)
        for index, layer in enumerate(self.features[: last + 1]):
            x = layer(x)
            if index in self.layer_weights:  # cloned: torchvision's next ReLU works in place
                out.append(x.clone())
        return out

    def _pairs(self, rendered: torch.Tensor, target: torch.Tensor) -> list[tuple[float, torch.Tensor, torch.Tensor]]:
        got, wanted = self._features(rendered), [f.detach() for f in self._features(target.detach())]
        weights = [self.layer_weights[index] for index in sorted(self.layer_weights)]
        return list(zip(weights, got, wanted))

    def forward(self, rendered: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = self._pairs(rendered, target)
        perceptual = sum(w * F.l1_loss(g, t) for w, g, t in pairs)
        style = sum(w * F.l1_loss(_gram(g), _gram(t)) for w, g, t in pairs)
        return perceptual, style

    def perceptual(self, rendered: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The perceptual term alone (style weight 0, as Real-ESRGAN fine-tunes): no Gram matrices."""
        return sum(w * F.l1_loss(g, t) for w, g, t in self._pairs(rendered, target))


def _gram(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    flat = x.reshape(n, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)
