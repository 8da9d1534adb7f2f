"""LPIPS (AlexNet variant) for the outer loss.

The ``lpips`` package ships the small linear heads; the AlexNet backbone weights are
torchvision's ImageNet file, which comes from :func:`f2n.weights.weight_path` (the
user's cache or the official URL), never from a silent torchvision download.
"""

import warnings
from pathlib import Path

from torch import nn

from f2n.weights import load_into, load_state_dict_file, weight_path


def build_lpips(alexnet_weights: Path | None = None) -> nn.Module:
    """LPIPS-Alex, frozen, in eval mode; inputs are images in [-1, 1]. Without a path the
    registry's ``alexnet`` file is used (WeightsError when it is absent)."""
    import lpips  # here, not at module level: it loads torchvision's model zoo (seconds)

    path = alexnet_weights if alexnet_weights is not None else weight_path("alexnet")
    features = load_state_dict_file(path)
    with warnings.catch_warnings():  # lpips calls torchvision's deprecated `pretrained=` argument
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
    # lpips splits AlexNet's `features` into slices but keeps each layer's index:
    # `slice2.3.weight` is torchvision's `features.3.weight`.
    names = {key: "features." + key.split(".", 1)[1] for key in model.net.state_dict()}
    backbone = {key: features[name] for key, name in names.items() if name in features}
    load_into(model.net, backbone, what=f"AlexNet weights {path}")  # names any missing layer
    return model.eval().requires_grad_(False)
