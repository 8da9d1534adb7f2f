"""θ as a file that spandrel loads as ESRGAN: what ComfyUI's "Load Upscale Model" and chaiNNer
read. f2n's canonical RRDBNet names are Real-ESRGAN's, so the file is the weights as they are;
what this module adds is saying no to a network spandrel would load but run wrongly, and
checking the written file with spandrel itself."""

from collections.abc import Mapping
from pathlib import Path

import torch
from spandrel import ImageModelDescriptor, ModelLoader

from f2n.errors import ConfigError
from f2n.export.onnx_export import VerificationError
from f2n.nets.rrdbnet import RRDBNet
from f2n.weights.checkpoint import VALUE_RANGE_META, save_safetensors_atomic
from f2n.weights.sr import LoadedSR

SPANDREL_ARCH = "ESRGAN"
SPANDREL_GROW_CH = 32  # spandrel's ESRGAN builds every dense block with 32 growth channels
FORMAT = "f2n-spandrel-esrgan"


def network_refusal(model: RRDBNet, name: str) -> str:
    """Why spandrel would run ``model`` (called ``name``) differently from f2n ('' when it would not)."""
    if model.value_range == "signed":
        return (f"{name} was trained in [-1, 1]; spandrel feeds [0, 1] and would run it wrongly: "
                "use --format onnx, which carries the range change")
    grow = model.body[0].rdb1.conv1.out_channels
    if grow != SPANDREL_GROW_CH:
        return f"{name} has {grow} growth channels per dense block; spandrel's ESRGAN has {SPANDREL_GROW_CH}"
    return ""


def spandrel_refusal(loaded: LoadedSR) -> str:
    """Why the file ``loaded`` came from would run wrongly in spandrel once exported ('' when it would not)."""
    if loaded.condition_net is not None:
        return (f"{loaded.path.name} carries a CMDSR ConditionNet that modulates θ per photo; spandrel would run it "
                "unmodulated: adapt a photo with f2n-adapt-and-run --save-weights and export that θ′")
    return network_refusal(loaded.model, f"{loaded.path.name} ({loaded.value_range})")


def check_spandrel_compatible(loaded: LoadedSR) -> None:
    refusal = spandrel_refusal(loaded)
    if refusal:
        raise ConfigError(f"--format spandrel: {refusal}")


def write_spandrel(loaded: LoadedSR, path: Path, source: str) -> Path:
    check_spandrel_compatible(loaded)
    return save_spandrel_weights(path, loaded.model.state_dict(), source)


def save_spandrel_weights(path: Path, weights: Mapping[str, torch.Tensor], source: str) -> Path:
    """Canonical RRDBNet weights (θ or θ′) as fp32 safetensors under Real-ESRGAN's key names, with
    no prefix and no MaskNet, so spandrel's key detection sees a plain Real-ESRGAN file."""
    tensors = {name: value.detach().to(torch.float32) for name, value in weights.items()}
    return save_safetensors_atomic(path, tensors, {"format": FORMAT, "source": source, VALUE_RANGE_META: "unit"})


def spandrel_model(weights: Mapping[str, torch.Tensor], model: RRDBNet, name: str) -> ImageModelDescriptor:
    """θ′ for ``model``'s architecture as spandrel's model, exactly as ComfyUI's "Load Upscale
    Model" node would make it from the exported file (its own call on the state dict)."""
    refusal = network_refusal(model, name)
    if refusal:
        raise ConfigError(refusal)
    descriptor = ModelLoader().load_from_state_dict({key: value.detach().float() for key, value in weights.items()})
    if not isinstance(descriptor, ImageModelDescriptor) or descriptor.architecture.id != SPANDREL_ARCH:
        raise ConfigError(f"spandrel does not read {name} as {SPANDREL_ARCH}")
    return descriptor.eval()


def spandrel_difference(path: Path, model: torch.nn.Module, crop: torch.Tensor) -> float:
    """Load ``path`` with spandrel's ModelLoader (the call ComfyUI's loader makes), check it is
    ESRGAN at ``model``'s scale, and return the max abs difference of its output to ``model``'s
    on ``crop`` (both clamped to [0, 1], as spandrel returns it)."""
    descriptor = ModelLoader().load_from_file(str(path))
    arch, scale = descriptor.architecture.id, descriptor.scale
    if arch != SPANDREL_ARCH or scale != model.scale:
        raise VerificationError(f"spandrel reads {path.name} as {arch} x{scale}, "
                                f"expected {SPANDREL_ARCH} x{model.scale}")
    descriptor.eval()
    with torch.inference_mode():
        got = descriptor(crop)
        want = model(crop).clamp(0, 1)
    return float((got - want).abs().max())
