"""Face restorers that spandrel ships: GFPGAN v1.x clean, RestoreFormer (spandrel) and
CodeFormer (spandrel-extra-arches). Recognised and loaded by spandrel's own architecture
classes — not re-implemented here. Wrapper keys (``params_ema``) are removed by
:func:`f2n.weights.checkpoint.read_weight_file` before these see the state dict.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch import nn

from f2n.errors import WeightsError

# f2n network name -> (module, spandrel Architecture class, network class, pip package).
# Each network class's defaults are the released file's hyperparameters.
SPANDREL_ARCHITECTURES = {
    "gfpgan": ("spandrel.architectures.GFPGAN", "GFPGANArch", "GFPGAN", "spandrel"),
    "restoreformer": ("spandrel.architectures.RestoreFormer", "RestoreFormerArch", "RestoreFormer", "spandrel"),
    "codeformer": ("spandrel_extra_arches.architectures.CodeFormer", "CodeFormerArch", "CodeFormer",
                   "spandrel-extra-arches"),
}


def _architecture(name: str) -> object:
    module, class_name, _, _ = SPANDREL_ARCHITECTURES[name]
    return getattr(importlib.import_module(module), class_name)()  # imported on first use


def network_class(name: str) -> type[nn.Module]:
    """spandrel's network class for ``name`` (its defaults build the released network)."""
    module, _, class_name, _ = SPANDREL_ARCHITECTURES[name]
    return getattr(importlib.import_module(module), class_name)


def is_face_restorer(name: str, state: dict[str, torch.Tensor]) -> bool:
    """spandrel's key test for ``name``; False when its package is not installed."""
    try:
        return bool(_architecture(name).detect(state))
    except ImportError:
        return False


def load_face_restorer(name: str, state: dict[str, torch.Tensor], path: Path) -> nn.Module:
    """spandrel's network ``name`` in eval mode: hyperparameters from the shapes, strict loading."""
    try:
        architecture = _architecture(name)
    except ImportError as error:
        package = SPANDREL_ARCHITECTURES[name][3]
        raise WeightsError(f"{path} is a {name} network, which needs the {package} package ({error})") from None
    try:
        return architecture.load(state).model.eval()
    except (KeyError, RuntimeError, ValueError, TypeError) as error:
        first = next(iter(str(error).strip().splitlines()), type(error).__name__)[:200]
        raise WeightsError(f"{path} looks like {name} but does not load into spandrel's {name}: {first}") from None
