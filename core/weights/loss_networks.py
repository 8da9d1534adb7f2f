"""The fixed networks behind training losses: torchvision's VGG-19 (feature matching) and
the ArcFace IR-SE50 face recogniser (identity; facexlib's ``Backbone``, the architecture of
GPEN's ``model_ir_se50.pth``). Recognised by their keys, loaded strictly."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from f2n.weights.checkpoint import load_into


def is_vgg19(state: dict[str, torch.Tensor]) -> bool:
    convs = sum(1 for key in state if key.startswith("features.") and key.endswith(".weight"))
    return convs == 16 and "classifier.6.weight" in state


def load_vgg19(state: dict[str, torch.Tensor], path: Path) -> nn.Module:
    import torchvision

    with torch.device("meta"):  # no random init of 143 M parameters: the file fills them
        model = torchvision.models.vgg19()
    load_into(model, state, what=f"VGG-19 weights {path}")
    return model.eval()


def is_arcface_ir_se50(state: dict[str, torch.Tensor]) -> bool:
    return "input_layer.0.weight" in state and "output_layer.3.weight" in state and "body.23.res_layer.5.fc1.weight" in state


def load_arcface_ir_se50(state: dict[str, torch.Tensor], path: Path) -> nn.Module:
    from facexlib.recognition.arcface_arch import Backbone

    with torch.device("meta"):
        model = Backbone(num_layers=50, drop_ratio=0.6, mode="ir_se")
    load_into(model, state, what=f"ArcFace IR-SE50 weights {path}")
    return model.eval()
