"""θ as a file that spandrel loads as ESRGAN: what ComfyUI's "Load Upscale Model" and chaiNNer
read. f2n's canonical RRDBNet names are Real-ESRGAN's, so the file is the weights as they are;
what this module adds is saying no to a network spandrel would load but run wrongly, and
checking the written file with spandrel itself."""

from pathlib import Path

import torch
from spandrel import ModelLoader

from f2n.errors import ConfigError
from f2n.export.onnx_export import VerificationError
from f2n.weights.checkpoint import VALUE_RANGE_META, save_safetensors_atomic
from f2n.weights.sr import LoadedSR

SPANDREL_ARCH = "ESRGAN"
SPANDREL_GROW_CH = 32  # spandrel's ESRGAN builds every dense block with 32 growth channels
FORMAT = "f2n-spandrel-esrgan"


def spandrel_refusal(loaded: LoadedSR) -> str:
    """Why spandrel would run ``loaded`` differently from f2n ('' when it would not)."""
    if loaded.value_range.value_range == "signed":
        return (f"{loaded.path.name} was trained in [-1, 1] ({loaded.value_range.source}); spandrel feeds [0, 1] "
                "and would run it wrongly: use --format onnx, which carries the range change")
    if loaded.condition_net is not None:
        return (f"{loaded.path.name} carries a CMDSR ConditionNet that modulates θ per photo; spandrel would run it "
                "unmodulated: adapt a photo with f2n-adapt-and-run --save-weights and export that θ′")
    grow = loaded.descriptor.num_grow_ch
    if grow != SPANDREL_GROW_CH:
        return f"{loaded.path.name} has {grow} growth channels per dense block; spandrel's ESRGAN has {SPANDREL_GROW_CH}"
    return ""


def check_spandrel_compatible(loaded: LoadedSR) -> None:
    refusal = spandrel_refusal(loaded)
    if refusal:
        raise ConfigError(f"--format spandrel: {refusal}")


def write_spandrel(loaded: LoadedSR, path: Path, source: str) -> Path:
    """θ as fp32 safetensors under Real-ESRGAN's key names (f2n's canonical ones), with no
    prefix and no MaskNet, so spandrel's key detection sees a plain Real-ESRGAN file."""
    check_spandrel_compatible(loaded)
    weights = {name: value.detach().to(torch.float32) for name, value in loaded.model.state_dict().items()}
    metadata = {"format": FORMAT, "source": source, VALUE_RANGE_META: "unit"}
    return save_safetensors_atomic(path, weights, metadata)


def spandrel_difference(path: Path, model: torch.nn.Module, crop: torch.Tensor) -> float:
    """Load ``path`` with spandrel's ModelLoader (the call ComfyUI's loader makes), check it is
    ESRGAN at ``model``'s scale, and return the max abs difference of its output to ``model``'s
    on ``crop`` (both clamped to [0, 1], as spandrel returns it)."""
    descriptor = ModelLoader().load_from_file(str(path))
    arch, scale = descriptor.architecture.id, descriptor.scale
    if arch != SPANDREL_ARCH or scale != model.scale:
        raise VerificationError(f"spandrel reads {path.name} as {arch} x{scale}, expected {SPANDREL_ARCH} x{model.scale}")
    descriptor.eval()
    with torch.inference_mode():
        got = descriptor(crop)
        want = model(crop).clamp(0, 1)
    return float((got - want).abs().max())
