"""The MMRB restorer's content and identity losses and its local-discriminator crops.
Images are (N, 3, H, W) RGB in [−1, 1] (the restorer's range).

* ``FeatureMatching``: ‖ψ_i(X) − ψ_i(X')‖₂ over VGG-19 layers relu1_1 … relu5_1 (the paper's
  eq. 14 names "the i-th convolution layer" without listing them; these five are the usual
  choice of the feature-matching loss it cites), mean squared error averaged over layers.
* ``IdentityLoss``: ‖φ(X) − φ(X')‖₁ (eq. 15) with φ the ArcFace IR-SE50 embedding that GPEN
  trains with (``model_ir_se50.pth``; facexlib's ``Backbone`` is the same architecture),
  on GPEN's crop of the face interior pooled to 112×112.
* ``component_boxes``: the left-eye, right-eye and mouth boxes of the local discriminators.
  The paper takes them from 68 landmarks; f2n's detector gives 5 and the training faces are
  aligned to the FFHQ template, so the boxes come from the template's 5 points: a square of
  0.6 × the eye distance on each eye, and of 1.2 × the mouth width on the mouth centre.
"""

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from f2n.runtime import face_template
from f2n.vgg_perceptual import IMAGENET_MEAN, IMAGENET_STD
from f2n.weights import load_network, load_state_dict_file
from f2n.weights.loss_networks import vgg19_features

VGG_LAYERS = (1, 6, 11, 20, 29)  # relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 in torchvision's vgg19.features
COMPONENTS = ("left_eye", "right_eye", "mouth")
ARCFACE_CROP = (35, 33, 32, 36)  # GPEN's IDLoss crop of a 256² face: top, bottom, left, right margins


class FeatureMatching(nn.Module):
    def __init__(self, vgg19_weights: Path) -> None:
        super().__init__()
        self.features = vgg19_features(vgg19_weights, through=VGG_LAYERS[-1])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def layer_outputs(self, image: torch.Tensor) -> list[torch.Tensor]:
        x = ((image + 1) / 2 - self.mean) / self.std
        outputs = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in VGG_LAYERS:
                outputs.append(x)
        return outputs

    def forward(self, restored: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            wanted = self.layer_outputs(target)
        got = self.layer_outputs(restored)
        return torch.stack([F.mse_loss(g, w) for g, w in zip(got, wanted)]).mean()


class IdentityLoss(nn.Module):
    def __init__(self, arcface_weights: Path) -> None:
        super().__init__()
        _, network = load_network(load_state_dict_file(arcface_weights), arcface_weights, expected="arcface-ir-se50")
        self.network = network.requires_grad_(False)

    def embed(self, face: torch.Tensor) -> torch.Tensor:
        size = face.shape[-1]
        top, bottom, left, right = (round(margin * size / 256) for margin in ARCFACE_CROP)
        interior = face[:, :, top : size - bottom, left : size - right]
        return self.network(F.adaptive_avg_pool2d(interior, (112, 112)))

    def forward(self, restored: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            wanted = self.embed(target)
        return (self.embed(restored) - wanted).abs().sum(dim=1).mean()


def component_boxes(size: int) -> dict[str, tuple[int, int, int, int]]:
    """(top, left, side) of each component's square in a ``size``² FFHQ-aligned face,
    from the template's 5 points (left eye, right eye, nose, mouth left, mouth right)."""
    left_eye, right_eye, _, mouth_left, mouth_right = face_template(size)
    eye_side = 0.6 * float(np.linalg.norm(right_eye - left_eye))
    mouth_side = 1.2 * float(np.linalg.norm(mouth_right - mouth_left))
    centres = {"left_eye": (left_eye, eye_side), "right_eye": (right_eye, eye_side),
               "mouth": ((mouth_left + mouth_right) / 2, mouth_side)}
    boxes = {}
    for name, (centre, side) in centres.items():
        side_px = max(2, round(side))
        left, top = (int(np.clip(round(c - side / 2), 0, size - side_px)) for c in centre)
        boxes[name] = (top, left, side_px)
    return boxes


def crop_component(images: torch.Tensor, box: tuple[int, int, int], out_size: int) -> torch.Tensor:
    top, left, side = box
    crop = images[:, :, top : top + side, left : left + side]
    return F.interpolate(crop, size=(out_size, out_size), mode="bilinear", align_corners=False, antialias=side > out_size)
