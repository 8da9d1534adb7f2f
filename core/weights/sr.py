"""Load an RRDBNet from any known checkpoint layout: recognise the layout by its keys,
map it onto the canonical Real-ESRGAN names, read hyperparameters from tensor shapes.

Layouts: Real-ESRGAN / BasicSR / f2n (``conv_first``, ``body.N.rdbK.convM``, ...),
old-architecture ESRGAN (``model.0``, ``model.1.sub.N.RDBK.convM.0``, ``model.3``, ...),
new-architecture ESRGAN (``RRDB_trunk.N.RDBK.convM``, ``trunk_conv``, ``upconv1``,
``HRconv``), and the f2n checkpoint format (``sr.``/``masknet.``/``condition.`` prefixes,
see :mod:`f2n.weights.checkpoint`).

The **value range** θ was trained on (:data:`f2n.nets.rrdbnet.ValueRange`) is not in the
weights; :func:`resolve_value_range` decides it, first match wins: the caller's explicit
choice (``--sr-range``), the file's own record (f2n checkpoints and ``--save-weights``
outputs write ``value_range``), the registry entry, the official F2N-ESRGAN release's file
names (signed), else ``unit`` — every other RRDBNet release f2n knows is trained in [0, 1].

Not spandrel's ESRGAN loader: it builds every RRDBNet with 32 growth channels, so it
fails on the num_grow_ch 4 and 6 nets of tests/test_weights_loading.py (f2n's tiny and
research nets), and it maps layouts the other way, onto the old ``model.N`` names (in
private functions). Where both load (num_grow_ch 32) the outputs are equal (max |diff| 0.0,
spandrel 0.4.2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from f2n.errors import WeightsError
from f2n.nets.condition_net import ConditionNet
from f2n.nets.rrdbnet import RRDBNet, ValueRange
from f2n.weights.checkpoint import (
    VALUE_RANGE_META,
    AdaptationDefaults,
    PatchDefaults,
    WeightFile,
    is_f2n_checkpoint,
    load_into,
    read_weight_file,
    recorded_value_range,
    split_f2n_checkpoint,
)
from f2n.weights.condition_net import load_condition_net
from f2n.weights.registry import WeightSpec, find_spec
from f2n.weights.store import weight_path

# Old-architecture ESRGAN x4: model = [conv_first, ShortcutBlock(RRDBs + conv_body), up, conv_up1, lrelu, up, conv_up2, lrelu, conv_hr, lrelu, conv_last]
OLD_ARCH_TAIL = {"model.0.": "conv_first.", "model.3.": "conv_up1.", "model.6.": "conv_up2.", "model.8.": "conv_hr.", "model.10.": "conv_last."}
OLD_ARCH_RDB = re.compile(r"^model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)$")
OLD_ARCH_TRUNK = re.compile(r"^model\.1\.sub\.(\d+)\.(weight|bias)$")
NEW_ARCH_NAMES = {"trunk_conv.": "conv_body.", "upconv1.": "conv_up1.", "upconv2.": "conv_up2.", "HRconv.": "conv_hr."}
NEW_ARCH_RDB = re.compile(r"^RRDB_trunk\.(\d+)\.RDB(\d)\.conv(\d)\.(weight|bias)$")
CANONICAL_BODY = re.compile(r"^body\.(\d+)\.")
# The official F2N-ESRGAN files (csxmli2016/ReDegNet, trained in [-1, 1]): the name the
# network class loads by default (CleanTest/models/F2NESRGAN.py) and the two released
# weight sets test_restoration.py names. A file renamed otherwise needs --sr-range signed.
OFFICIAL_SIGNED_FILENAMES = ("F2NESRGAN.pth", "net_f2n_g.pth", "net_f2n_init.pth")


@dataclass(frozen=True)
class SRDescriptor:
    """What a caller needs to know about a loaded SR network: its hyperparameters, read from
    the tensor shapes, and the value range θ was trained on."""

    scale: int
    num_in_ch: int
    num_out_ch: int
    num_feat: int
    num_block: int
    num_grow_ch: int
    value_range: ValueRange = "unit"  # what θ was trained on; the network takes and returns [0, 1] either way


@dataclass(frozen=True)
class RangeChoice:
    """The value range θ is run with and where that came from (for the log and the report)."""

    value_range: ValueRange
    source: str
    guessed: bool = False  # from a file name or the default, not from a record, the registry or --sr-range

    def __str__(self) -> str:
        if self.guessed:  # a renamed F2N-ESRGAN file would run silently in the wrong range
            return f"{self.value_range} (a guess: {self.source}; give --sr-range if it is wrong)"
        return f"{self.value_range} ({self.source})"


@dataclass(frozen=True)
class LoadedSR:
    """An RRDBNet in eval mode with its descriptor and the origin of its value range; for an
    f2n checkpoint also the adaptation defaults, the MaskNet state dict (and the bicubic its
    LQ input is made with), the patch defaults and the CMDSR ConditionNet (else None)."""

    model: RRDBNet
    descriptor: SRDescriptor
    adaptation_defaults: AdaptationDefaults | None
    masknet_state: dict[str, torch.Tensor] | None
    path: Path
    condition_net: ConditionNet | None = None
    patch_defaults: PatchDefaults | None = None
    masknet_lq_resize: str = "bicubic"
    value_range: RangeChoice = RangeChoice("unit", "default")


def is_rrdbnet(state: dict[str, torch.Tensor]) -> bool:
    """Whether ``state`` has the keys of one of the RRDBNet layouts above."""
    canonical = "conv_first.weight" in state and any(CANONICAL_BODY.match(key) for key in state)
    return canonical or "model.1.sub.0.RDB1.conv1.0.weight" in state or "RRDB_trunk.0.RDB1.conv1.weight" in state


def load_rrdbnet(state: dict[str, torch.Tensor], path: Path) -> RRDBNet:
    """An RRDBNet in eval mode on the CPU from a state dict in any known layout."""
    return _build_rrdbnet(canonicalize_rrdbnet(state, path), path)[0].eval()


def _build_rrdbnet(canonical: dict[str, torch.Tensor], path: Path,
                   value_range: ValueRange = "unit") -> tuple[RRDBNet, dict[str, int]]:
    hyper = infer_hyperparameters(canonical, path)
    with torch.device("meta"):
        model = RRDBNet(**hyper, value_range=value_range)
    load_into(model, canonical, what=f"SR weights {path}")
    return model, hyper


def canonicalize_rrdbnet(state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """Map a known RRDBNet layout onto canonical names; unknown keys are kept so
    that strict loading names them."""
    if "conv_first.weight" in state and any(CANONICAL_BODY.match(k) for k in state):
        return dict(state)
    if "model.0.weight" in state:
        return _from_old_arch(state, path)
    if "RRDB_trunk.0.RDB1.conv1.weight" in state:
        return {_new_arch_name(key): value for key, value in state.items()}
    first = ", ".join(list(state)[:3])
    raise WeightsError(
        f"{path} is not a known RRDBNet layout: keys start {first}, expected conv_first/body.* (Real-ESRGAN), "
        "model.0/model.1.sub.* (old ESRGAN) or RRDB_trunk.* (ESRGAN)"
    )


def _from_old_arch(state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    if "model.10.weight" not in state:
        last = max(int(key.split(".")[1]) for key in state if key.startswith("model."))
        raise WeightsError(f"{path} is an old-style ESRGAN whose last layer is model.{last}, expected model.10 (x4): only x4 is supported")
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        rdb, trunk = OLD_ARCH_RDB.match(key), OLD_ARCH_TRUNK.match(key)
        prefix = next((p for p in OLD_ARCH_TAIL if key.startswith(p)), None)
        if rdb:
            out[f"body.{rdb[1]}.rdb{rdb[2]}.conv{rdb[3]}.{rdb[4]}"] = value
        elif trunk:
            out[f"conv_body.{trunk[2]}"] = value  # the only plain conv in the shortcut's sub-sequence
        elif prefix:
            out[OLD_ARCH_TAIL[prefix] + key[len(prefix) :]] = value
        else:
            out[key] = value
    return out


def _new_arch_name(key: str) -> str:
    rdb = NEW_ARCH_RDB.match(key)
    if rdb:
        return f"body.{rdb[1]}.rdb{rdb[2]}.conv{rdb[3]}.{rdb[4]}"
    prefix = next((p for p in NEW_ARCH_NAMES if key.startswith(p)), None)
    return NEW_ARCH_NAMES[prefix] + key[len(prefix) :] if prefix else key


def infer_hyperparameters(state: dict[str, torch.Tensor], path: Path) -> dict[str, int]:
    """RRDBNet constructor arguments read from the shapes of canonical weights."""
    needed = ("conv_first.weight", "conv_last.weight", "body.0.rdb1.conv1.weight")
    absent = [key for key in needed if key not in state]
    if absent:
        raise WeightsError(f"{path}: missing {', '.join(absent)}, expected in every RRDBNet with at least one block")
    in_ch = state["conv_first.weight"].shape[1]
    out_ch = state["conv_last.weight"].shape[0]
    # Real-ESRGAN x2/x1 pixel-unshuffle the input by 2/4 first, multiplying conv_first's inputs by 4/16.
    scale, num_in_ch = {out_ch * 4: (2, out_ch), out_ch * 16: (1, out_ch)}.get(in_ch, (4, in_ch))
    return {
        "num_in_ch": num_in_ch,
        "num_out_ch": out_ch,
        "scale": scale,
        "num_feat": state["conv_first.weight"].shape[0],
        "num_block": 1 + max(int(m[1]) for m in map(CANONICAL_BODY.match, state) if m),
        "num_grow_ch": state["body.0.rdb1.conv1.weight"].shape[0],
    }


def resolve_value_range(path: Path, weights: WeightFile, spec: WeightSpec | None,
                        requested: ValueRange | None = None) -> RangeChoice:
    """The range θ in ``path`` runs with (module docstring: the order of the rules)."""
    if requested is not None:
        return RangeChoice(requested, "--sr-range")
    recorded = recorded_value_range(weights, path)
    if recorded is not None:
        return RangeChoice(recorded, f"recorded in {path.name}")
    if spec is not None:
        return RangeChoice(spec.value_range or "unit", f"registry entry {spec.name}")
    if path.name in OFFICIAL_SIGNED_FILENAMES:
        return RangeChoice("signed", f"{path.name} is named as an official F2N-ESRGAN file, trained in [-1, 1]",
                           guessed=True)
    return RangeChoice("unit", f"{path.name} records no {VALUE_RANGE_META}: [0, 1], as Real-ESRGAN", guessed=True)


def load_sr_network(source: str | Path = "realesrgan-x4plus", *, device: str | torch.device = "cpu",
                    value_range: ValueRange | None = None) -> LoadedSR:
    """Load an RRDBNet from a registry name (fetched/converted into the cache on first
    use) or a weight file: .pth/.safetensors in any known layout, an adapted weight set,
    or an f2n checkpoint. ``value_range``: overrides what the file or registry says
    (:func:`resolve_value_range`)."""
    spec = find_spec(source) if isinstance(source, str) else None
    if spec is not None:
        path = weight_path(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise WeightsError(f"SR weights {source!r} are neither a registry name (see f2n-models list) nor an existing file")
    weights = read_weight_file(path)
    checkpoint = split_f2n_checkpoint(weights, path) if is_f2n_checkpoint(weights) else None
    canonical = canonicalize_rrdbnet(checkpoint.sr if checkpoint else weights.tensors, path)
    choice = resolve_value_range(path, weights, spec, value_range)
    model, hyper = _build_rrdbnet(canonical, path, choice.value_range)
    descriptor = SRDescriptor(**hyper, value_range=choice.value_range)
    if checkpoint is None:
        return LoadedSR(model.to(device).eval(), descriptor, None, None, path, value_range=choice)
    condition = (load_condition_net(model, checkpoint.condition, checkpoint.condition_config, path)
                 if checkpoint.condition is not None and checkpoint.condition_config is not None else None)
    return LoadedSR(model.to(device).eval(), descriptor, checkpoint.adaptation_defaults, checkpoint.masknet, path,
                    condition.to(device).eval() if condition is not None else None,
                    checkpoint.patch_defaults, checkpoint.masknet_lq_resize, choice)
