"""Safe reading of weight files, strict loading into modules, and the f2n checkpoint format.

Reading: ``.safetensors`` through safetensors; anything else through
``torch.load(weights_only=True)``, which refuses pickles that would import or call
arbitrary code (such a file raises :class:`WeightsError`, it is never executed).
Wrappers are unwrapped (``params_ema`` before ``params``, then ``state_dict``) and a
DataParallel ``module.`` prefix is stripped.

f2n checkpoint format (version 1) — written by f2n-train, read by ``load_sr_network``:

- one ``.safetensors`` file;
- tensors ``sr.<name>`` for every RRDBNet parameter under its canonical name
  (``sr.conv_first.weight``, ``sr.body.0.rdb1.conv1.weight``, ...), and optionally
  ``masknet.<name>`` for every MaskNet parameter (``masknet.body.0.weight``, ...), and
  optionally ``condition.<name>`` for every CMDSR ConditionNet parameter;
- safetensors metadata ``{"f2n_format": "f2n-checkpoint/1", "f2n_meta": "<JSON>"}``
  where the JSON object may hold the adaptation defaults ``alpha`` (inner-loop
  learning rate, float), ``steps`` (int) and ``optimizer`` (str) — all three or none —,
  ``condition_net`` (the ConditionNet's config: ``num_feat``, ``num_layers``,
  ``modulate``; present exactly when ``condition.`` tensors are), the patch defaults
  ``patches_per_face`` or ``patches_per_image`` (int, at most one) and ``patch_lq_size``
  (int), ``masknet_lq_resize`` (how MaskNet's LQ input is upsampled: ``bicubic``, the
  default, or ``tf1-bicubic`` for the official MetaF2N MaskNet), ``value_range`` (the
  range θ was trained on: ``unit``, the default, or ``signed``; see
  :mod:`f2n.nets.rrdbnet`), plus any other entries (training step, data, provenance, ...),
  kept as they are.

An adapted weight set (``f2n-adapt-and-run --save-weights``) is simpler: a
``.safetensors`` of canonical RRDBNet names without prefix; its metadata is free but for
``value_range``, which is read as in a checkpoint's meta.
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from f2n.errors import WeightsError
from f2n.fileio import write_atomic
from f2n.nets.masknet import LQ_RESIZES
from f2n.nets.rrdbnet import VALUE_RANGES, ValueRange
from f2n.weights.fit import check_weight_set, names, weight_shapes

F2N_FORMAT = "f2n-checkpoint/1"
SR_PREFIX = "sr."
MASKNET_PREFIX = "masknet."
CONDITION_PREFIX = "condition."
CONDITION_META = "condition_net"
VALUE_RANGE_META = "value_range"
PREFIXES = (SR_PREFIX, MASKNET_PREFIX, CONDITION_PREFIX)
WRAPPER_KEYS = ("params_ema", "params", "state_dict")  # Real-ESRGAN/BasicSR first: params_ema is the EMA generator
ENGINE_SUFFIXES = {".onnx": "ONNX graph", ".pt2": "AOTInductor package", ".plan": "TensorRT plan"}  # f2n-export outputs


@dataclass(frozen=True)
class AdaptationDefaults:
    """How a checkpoint was meta-trained to be adapted: inner-loop learning rate,
    number of steps and optimizer name."""

    alpha: float
    steps: int
    optimizer: str


@dataclass(frozen=True)
class PatchDefaults:
    """How many face patch pairs a checkpoint is adapted with: ``per_face`` or
    ``per_image`` (exactly one), and the LQ patch side when it says so."""

    per_face: int | None = None
    per_image: int | None = None
    lq_size: int | None = None


@dataclass(frozen=True)
class F2NCheckpoint:
    """The parts of an f2n checkpoint; the optional ones None when absent."""

    sr: dict[str, torch.Tensor]
    masknet: dict[str, torch.Tensor] | None
    adaptation_defaults: AdaptationDefaults | None
    condition: dict[str, torch.Tensor] | None  # ConditionNet state
    condition_config: dict[str, object] | None  # its ConditionNetConfig fields, as JSON
    patch_defaults: PatchDefaults | None = None
    masknet_lq_resize: str = "bicubic"  # f2n.nets.masknet.LQ_RESIZES


@dataclass(frozen=True)
class WeightFile:
    """The tensors of a weight file and its safetensors metadata (empty for .pth)."""

    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str]


def read_weight_file(path: str | Path) -> WeightFile:
    """Read tensors and metadata; unwrap and strip ``module.`` (see module docstring). A NaN/Inf
    value in any floating-point tensor is a WeightsError naming that tensor."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weight file {path} does not exist")
    if path.suffix.lower() in ENGINE_SUFFIXES:  # torch.load would call it corrupt
        raise WeightsError(f"{path} is an exported {ENGINE_SUFFIXES[path.suffix.lower()]}, not a weight file; "
                           "give the .pth/.safetensors it was exported from")
    if path.suffix.lower() == ".safetensors":
        tensors, metadata = _read_safetensors(path)
    else:
        tensors, metadata = _unwrap(_torch_load(path), path), {}
    _check_finite(tensors, path)
    return WeightFile({_strip_module(key): value for key, value in tensors.items()}, metadata)


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a .safetensors / .pth / .pt file, read without running code."""
    return read_weight_file(path).tensors


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            return {key: handle.get_tensor(key) for key in handle.keys()}, dict(handle.metadata() or {})
    except PermissionError as error:  # the file may be fine (torch raises OSError for truncated ones too)
        raise WeightsError(f"cannot read {path}: {error.strerror or error}") from None
    except (SafetensorError, OSError, ValueError) as error:
        raise WeightsError(f"cannot read {path} as safetensors ({_first_line(error)}); the file is corrupt or truncated") from None


def _torch_load(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        needed = _CODE_NEEDED.search(str(error))
        if needed:
            raise WeightsError(
                f"refused to load {path}: its pickle needs code execution to load (it calls {needed[1]}), "
                "and f2n never runs code from a weight file; get the weights as .safetensors, or convert the "
                "file on a machine where its source is trusted"
            ) from None
        raise WeightsError(f"cannot read {path} as a PyTorch weight file ({_torch_reason(error)}); "
                           "the file is corrupt or truncated") from None
    except MemoryError:
        raise  # the machine's state, not the file's: not "corrupt"
    except PermissionError as error:  # the file may be fine (torch raises OSError for truncated ones too)
        raise WeightsError(f"cannot read {path}: {error.strerror or error}") from None
    except Exception as error:  # torch's reader raises RuntimeError, EOFError, ValueError... for a bad file
        raise WeightsError(f"cannot read {path} as a PyTorch weight file ({_torch_reason(error)}); "
                           "the file is corrupt or truncated") from None


# torch's weights-only unpickler names the global it refused: "Unsupported global: GLOBAL x.y" (torch
# 2.4-2.6), "unsupported GLOBAL x.y whose module x is blocked" (2.7+), "Unsupported class x.y".
_CODE_NEEDED = re.compile(r"unsupported (?:global|class)[:\s]*(?:GLOBAL\s+)?([\w.]+)", re.IGNORECASE)


def _torch_reason(error: BaseException) -> str:
    """The first line of torch's text that is about the file: never its advice to load with
    ``weights_only=False``, the one fix that would run a hostile file's code."""
    lines = [line.strip() for line in str(error).splitlines()]
    useful = [line for line in lines if line and "weights_only" not in line and "weights only" not in line.lower()]
    return useful[0][:200] if useful else type(error).__name__


def _check_finite(tensors: Mapping[str, torch.Tensor], path: Path) -> None:
    """Refuse NaN/Inf weights at load, naming the tensor: later they would only show as every
    photo's output being NaN."""
    for key, value in tensors.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise WeightsError(f"{path}: tensor {key} holds {bad} NaN/Inf value(s) of {value.numel()}: "
                               "the file is damaged or was saved from a diverged training run")


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    while isinstance(obj, Mapping):
        wrapper = next((key for key in WRAPPER_KEYS if key in obj and isinstance(obj[key], Mapping)), None)
        if wrapper is None:
            break
        obj = obj[wrapper]
    if not isinstance(obj, Mapping) or not obj:
        raise WeightsError(f"{path} holds a {type(obj).__name__}, expected a non-empty dict of tensors")
    not_tensors = [key for key, value in obj.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise WeightsError(f"{path}: entries {names(not_tensors)} are not tensors, expected a state dict of tensors only")
    return dict(obj)


def _strip_module(key: str) -> str:
    return key.removeprefix("module.")


def load_into(module: nn.Module, state_dict: Mapping[str, torch.Tensor], *, what: str) -> None:
    """Load ``state_dict`` into ``module`` strictly: every parameter and buffer
    present, nothing extra, every shape equal; otherwise one WeightsError
    (:func:`~f2n.weights.fit.check_weight_set`). ``what`` names the weights in the
    message. A module built under ``torch.device("meta")`` is filled by assignment."""
    expected = module.state_dict()
    check_weight_set(weight_shapes(expected), state_dict, what=what, target=type(module).__name__)
    # A module built on the meta device takes the tensors themselves (no init, no copy).
    on_meta = any(value.is_meta for value in expected.values())
    if on_meta:
        state_dict = {key: value.to(dtype=expected[key].dtype) for key, value in state_dict.items()}
    module.load_state_dict(dict(state_dict), strict=True, assign=on_meta)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


def save_f2n_checkpoint(
    path: str | Path,
    sr_state: Mapping[str, torch.Tensor],
    masknet_state: Mapping[str, torch.Tensor] | None = None,
    meta: Mapping[str, object] | None = None,
    *,
    condition_state: Mapping[str, torch.Tensor] | None = None,
    condition_config: Mapping[str, object] | None = None,
) -> Path:
    """Write an f2n checkpoint (format in the module docstring) atomically. A ConditionNet
    comes as its state and its config (``dataclasses.asdict`` of a ConditionNetConfig)."""
    meta = dict(meta or {})
    adaptation_defaults(meta, Path(path))  # refuse a partial alpha/steps/optimizer set before writing
    patch_defaults(meta, Path(path))
    masknet_lq_resize(meta, Path(path))
    parse_value_range(meta, Path(path))
    if (condition_state is None) != (condition_config is None):
        raise WeightsError(f"{path}: a ConditionNet needs both its weights and its config, got only one")
    if condition_config is not None:
        meta[CONDITION_META] = dict(condition_config)
    tensors = {SR_PREFIX + key: value for key, value in sr_state.items()}
    tensors.update({MASKNET_PREFIX + key: value for key, value in (masknet_state or {}).items()})
    tensors.update({CONDITION_PREFIX + key: value for key, value in (condition_state or {}).items()})
    metadata = {"f2n_format": F2N_FORMAT, "f2n_meta": json.dumps(meta, sort_keys=True)}
    return save_safetensors_atomic(path, tensors, metadata)


def save_safetensors_atomic(path: str | Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> Path:
    """Write tensors to a temp file beside ``path`` and rename it into place."""
    contiguous = {key: value.detach().to("cpu").contiguous() for key, value in tensors.items()}
    return write_atomic(Path(path), lambda temp: save_file(contiguous, str(temp), metadata=dict(metadata)))


def split_f2n_checkpoint(weights: WeightFile, path: Path) -> F2NCheckpoint:
    """The parts of an f2n checkpoint (format in the module docstring)."""
    if weights.metadata.get("f2n_format") != F2N_FORMAT:
        raise WeightsError(f"{path} has f2n_format {weights.metadata.get('f2n_format')!r}, expected {F2N_FORMAT!r}")
    other = [key for key in weights.tensors if not key.startswith(PREFIXES)]
    if other:
        raise WeightsError(f"{path}: keys {names(other)} have none of the prefixes {', '.join(PREFIXES)} of an f2n checkpoint")
    meta = _f2n_meta(weights, path)
    sr, masknet, condition = (_strip_prefix(weights.tensors, prefix) for prefix in PREFIXES)
    condition_config = meta.get(CONDITION_META)
    if bool(condition) != isinstance(condition_config, dict):
        raise WeightsError(f"{path}: ConditionNet tensors ({len(condition)}) and config ({condition_config!r}) "
                           "must come together")
    return F2NCheckpoint(sr, masknet or None, adaptation_defaults(meta, path), condition or None, condition_config,
                         patch_defaults(meta, path), masknet_lq_resize(meta, path))


def _f2n_meta(weights: WeightFile, path: Path) -> dict[str, object]:
    try:
        meta = json.loads(weights.metadata.get("f2n_meta", "{}"))
    except json.JSONDecodeError as error:
        raise WeightsError(f"{path}: f2n_meta is not JSON ({error})") from None
    if not isinstance(meta, dict):
        raise WeightsError(f"{path}: f2n_meta holds a {type(meta).__name__}, expected a JSON object")
    return meta


def recorded_value_range(weights: WeightFile, path: Path) -> ValueRange | None:
    """The ``value_range`` an f2n checkpoint's meta or an adapted weight set's metadata records,
    None when it records none (a third-party file)."""
    meta = _f2n_meta(weights, path) if is_f2n_checkpoint(weights) else weights.metadata
    return parse_value_range(meta, path) if VALUE_RANGE_META in meta else None


def _strip_prefix(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {key[len(prefix) :]: value for key, value in tensors.items() if key.startswith(prefix)}


def is_f2n_checkpoint(weights: WeightFile) -> bool:
    return "f2n_format" in weights.metadata or any(key.startswith(SR_PREFIX) for key in weights.tensors)


def adaptation_defaults(meta: Mapping[str, object], path: Path) -> AdaptationDefaults | None:
    present = [key for key in ("alpha", "steps", "optimizer") if key in meta]
    if not present:
        return None
    if len(present) != 3:
        raise WeightsError(f"{path}: meta has {present}, expected all of alpha, steps, optimizer or none")
    try:
        return AdaptationDefaults(alpha=float(meta["alpha"]), steps=int(meta["steps"]), optimizer=str(meta["optimizer"]))
    except (TypeError, ValueError):
        raise WeightsError(f"{path}: alpha={meta['alpha']!r}, steps={meta['steps']!r} are not a float and an int") from None


def patch_defaults(meta: Mapping[str, object], path: Path) -> PatchDefaults | None:
    counts = {key: meta[key] for key in ("patches_per_face", "patches_per_image") if key in meta}
    if not counts and "patch_lq_size" not in meta:
        return None
    if len(counts) > 1:
        raise WeightsError(f"{path}: meta has both patches_per_face and patches_per_image, expected at most one")
    values = {**counts, **({"patch_lq_size": meta["patch_lq_size"]} if "patch_lq_size" in meta else {})}
    bad = {key: value for key, value in values.items() if not isinstance(value, int) or isinstance(value, bool) or value < 1}
    if bad:
        raise WeightsError(f"{path}: meta {bad} are not integers >= 1")
    return PatchDefaults(per_face=counts.get("patches_per_face"), per_image=counts.get("patches_per_image"),
                         lq_size=values.get("patch_lq_size"))


def masknet_lq_resize(meta: Mapping[str, object], path: Path) -> str:
    resize = meta.get("masknet_lq_resize", "bicubic")
    if resize not in LQ_RESIZES:
        raise WeightsError(f"{path}: masknet_lq_resize is {resize!r}, expected one of {', '.join(LQ_RESIZES)}")
    return str(resize)


def parse_value_range(meta: Mapping[str, object], path: Path | str, key: str = VALUE_RANGE_META) -> ValueRange:
    """The range ``meta[key]`` records (unit when absent: every network was unit before ranges
    existed); anything else there is a WeightsError naming ``path``."""
    recorded = meta.get(key, "unit")
    if recorded not in VALUE_RANGES:
        raise WeightsError(f"{path}: {key} is {recorded!r}, expected one of {', '.join(VALUE_RANGES)}")
    return recorded
