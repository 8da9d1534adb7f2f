"""The fixed networks behind losses: torchvision's VGG-19 (perceptual terms and feature matching)
and the ArcFace IR-SE50 face recogniser (identity; facexlib's ``Backbone``, the architecture of
GPEN's ``model_ir_se50.pth``). Recognised by their keys, loaded strictly."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from f2n.errors import WeightsError
from f2n.vgg_perceptual import VGG19_CONVS
from f2n.weights.checkpoint import load_into, load_state_dict_file


def is_vgg19(state: dict[str, torch.Tensor]) -> bool:
    convs = sum(1 for key in state if key.startswith("features.") and key.endswith(".weight"))
    return convs == 16 and "classifier.6.weight" in state


def load_vgg19(state: dict[str, torch.Tensor], path: Path) -> nn.Module:
    import torchvision

    with torch.device("meta"):  # no random init of 143 M parameters: the file fills them
        model = torchvision.models.vgg19()
    load_into(model, state, what=f"VGG-19 weights {path}")
    return model.eval()


def vgg19_features(vgg19_weights: Path, through: int = max(VGG19_CONVS.values())) -> nn.Sequential:
    """torchvision's VGG-19 ``features`` up to index ``through`` (conv5_4), frozen (one copy serves
    every loss)."""
    state = load_state_dict_file(vgg19_weights)
    if not is_vgg19(state):
        raise WeightsError(f"{vgg19_weights} is not torchvision's VGG-19 (16 features.*.weight convs and "
                           f"classifier.6.weight expected; keys start {', '.join(list(state)[:3])})")
    return load_vgg19(state, vgg19_weights).features[: through + 1].eval().requires_grad_(False)


def is_arcface_ir_se50(state: dict[str, torch.Tensor]) -> bool:
    return "input_layer.0.weight" in state and "output_layer.3.weight" in state and "body.23.res_layer.5.fc1.weight" in state


def load_arcface_ir_se50(state: dict[str, torch.Tensor], path: Path) -> nn.Module:
    from facexlib.recognition.arcface_arch import Backbone

    with torch.device("meta"):
        model = Backbone(num_layers=50, drop_ratio=0.6, mode="ir_se")
    load_into(model, state, what=f"ArcFace IR-SE50 weights {path}")
    return model.eval()
