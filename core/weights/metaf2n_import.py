"""``f2n-models import metaf2n``: the official MetaF2N checkpoint (TensorFlow 1,
github.com/yinzhicun/MetaF2N) as an f2n checkpoint.

The official checkpoint is a TF1 name-based checkpoint (``model-400000.index`` +
``.data-00000-of-00001``) written by ``tf.compat.v1.train.Saver``. What f2n takes from it:

- the SR network under scope ``MODEL``: ``MODEL/conv_first/weight``, ``…/bias``,
  ``MODEL/body/{i}/rdb{j}/conv{k}/weight``, ``conv_body``, ``conv_up1``, ``conv_up2``,
  ``conv_hr``, ``conv_last`` — Real-ESRGAN's names with ``/`` for ``.``; kernels HWIO;
- MaskNet under scope ``Mask``: ``Mask/conv{1..8}/kernel`` and ``/bias``, HWIO.

Ignored, because a trained checkpoint holds them and inference needs none: Adam slots
(``…/Adam``, ``…/Adam_1``), ``beta1_power``/``beta2_power`` (one pair per optimizer:
``_1`` suffixes), the discriminator (``Discriminator/…``), ``global_step`` (read as the
step) and ``stop_grad`` (train.py's switch between first- and second-order MAML).
Anything else, a missing variable, a wrong shape or dtype is one ``WeightsError``
naming the variable, and no file is written.

The block count and widths are read from the names and shapes; every shape is then
checked against the f2n network built from them. Kernels go from HWIO to PyTorch's OIHW
by a transpose only: the values are copied bit for bit.

The f2n checkpoint carries the official test-time settings (``test.py``): one SGD step
at α = 1e-2, 16 patch pairs of 64×64 HR (16×16 LQ) per face, and MaskNet fed with TF1's
legacy bicubic resize (:mod:`f2n.tf1_resize`); plus where it came from (file, step,
SHA-256 of the data files).

TensorFlow is imported here only, lazily, and only for ``tf.train.load_checkpoint``.
"""

from __future__ import annotations

import glob
import importlib
import importlib.util
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from f2n.errors import ConfigError, WeightsError
from f2n.fileio import sha256_file
from f2n.nets.masknet import MaskNet
from f2n.nets.rrdbnet import RRDBNet
from f2n.stderr import quiet_native_stderr
from f2n.weights.checkpoint import MASKNET_PREFIX, SR_PREFIX, load_into, save_f2n_checkpoint

# test.py: GradientDescentOptimizer(0.01), --fine_tune_num 1, --patch_size 64 (HR) and
# --patch_num_per_img 16, drawn for each face crop; MaskNet input from resize_bicubic.
OFFICIAL_SETTINGS: dict[str, Any] = {
    "optimizer": "sgd",
    "alpha": 1e-2,
    "steps": 1,
    "patches_per_face": 16,
    "patch_lq_size": 16,
    "masknet_lq_resize": "tf1-bicubic",
}
INSTALL_HINT = 'reading a TensorFlow checkpoint needs TensorFlow: pip install "f2n[tf]"'

IGNORED = re.compile(r"^(Discriminator/.*|global_step|stop_grad|beta[12]_power(_\d+)?|.+/Adam(_\d+)?)$")
SR_SCOPE, MASK_SCOPE = "MODEL/", "Mask/"
MASK_VARIABLE = re.compile(r"^Mask/conv(\d+)/(kernel|bias)$")
SR_BLOCK = re.compile(r"^body\.(\d+)\.")
TF2_MARKERS = ("_CHECKPOINTABLE_OBJECT_GRAPH", "/.ATTRIBUTES/")
DATA_SHARD = re.compile(r"\.data-\d{5}-of-\d{5}$")
STEP_IN_NAME = re.compile(r"-(\d+)$")


class ImportedMetaF2N(nn.Module):
    """The official pair as one module, its keys those of an imported f2n checkpoint
    (``sr.…``, ``masknet.…``): what ``f2n-models add metaf2n FILE`` loads FILE into."""

    def __init__(self) -> None:
        super().__init__()
        self.sr = RRDBNet()  # the official SR network is x4plus-shaped: 23 blocks, 64 features
        self.masknet = MaskNet(lq_resize="tf1-bicubic")


def is_imported_metaf2n(state: Mapping[str, torch.Tensor]) -> bool:
    """An f2n checkpoint of an SR network and a MaskNet, nothing else (the dispatcher's
    test, :mod:`f2n.weights.networks`)."""
    prefixes = {key.split(".", 1)[0] for key in state}
    return prefixes == {SR_PREFIX.rstrip("."), MASKNET_PREFIX.rstrip(".")}


def load_imported_metaf2n(state: Mapping[str, torch.Tensor], path: Path | str) -> ImportedMetaF2N:
    """The pair loaded strictly: the official shapes or one WeightsError."""
    with torch.device("meta"):
        module = ImportedMetaF2N()
    load_into(module, state, what=f"MetaF2N weights {path}")
    return module.eval()


@dataclass(frozen=True)
class ImportPlan:
    """Which TF variable fills each f2n parameter (canonical name → TF name)."""

    sr: dict[str, str]
    masknet: dict[str, str]


def import_metaf2n(checkpoint: str | Path, out: str | Path) -> Path:
    """Read the official checkpoint at ``checkpoint`` (a prefix such as ``…/model-400000``,
    its ``.index`` file, or the folder holding it: the newest there) and write the f2n
    checkpoint ``out`` (``.safetensors``) atomically."""
    out = Path(out)
    if out.suffix != ".safetensors":
        raise ConfigError(f"--out {out} has suffix {out.suffix!r}, expected '.safetensors'")
    prefix = resolve_prefix(Path(checkpoint))
    reader = _open_reader(prefix)
    shapes = reader.get_variable_to_shape_map()
    plan = plan_import(shapes, {name: dtype.name for name, dtype in reader.get_variable_to_dtype_map().items()}, prefix)
    sr = {name: hwio_to_torch(_read(reader, variable, prefix)) for name, variable in plan.sr.items()}
    masknet = {name: hwio_to_torch(_read(reader, variable, prefix)) for name, variable in plan.masknet.items()}
    step = _step_from_name(prefix)  # what the official save() named it, else the variable
    if step is None and "global_step" in shapes:
        step = int(_read(reader, "global_step", prefix))
    provenance = {
        "source": str(prefix.resolve()),
        "source_step": step,
        "source_sha256": {path.name: sha256_file(path) for path in _data_files(prefix)},
    }
    return save_f2n_checkpoint(out, sr, masknet, {**OFFICIAL_SETTINGS, **provenance})


def resolve_prefix(path: Path) -> Path:
    """The checkpoint prefix ``path`` names. A folder: the prefix of its ``*.index`` file
    with the highest step in its name (``model-400000``), the newest file on a tie."""
    if path.is_dir():
        prefixes = [index.with_suffix("") for index in path.glob("*.index")]
        if not prefixes:
            raise WeightsError(f"folder {path} holds no TensorFlow checkpoint (no *.index file); "
                               "expected the official model-NNNN.index and model-NNNN.data-* files")
        path = max(prefixes, key=lambda p: (_step_or(p, -1), p.with_suffix(".index").stat().st_mtime))
    elif path.suffix == ".index":
        path = path.with_suffix("")
    elif DATA_SHARD.search(path.name):
        path = path.with_name(DATA_SHARD.sub("", path.name))
    if not path.with_name(path.name + ".index").is_file():
        raise WeightsError(f"no TensorFlow checkpoint at {path}: expected {path.name}.index and {path.name}.data-* "
                           "(give the prefix, e.g. pretrained_models/model-400000, or its folder)")
    if not _data_files(path):
        raise WeightsError(f"TensorFlow checkpoint {path} has its .index but no {path.name}.data-* file")
    return path


def _data_files(prefix: Path) -> list[Path]:
    return sorted(prefix.parent.glob(f"{glob.escape(prefix.name)}.data-*-of-*"))


def plan_import(shapes: Mapping[str, Sequence[int]], dtypes: Mapping[str, str], source: Path | str) -> ImportPlan:
    """Map the checkpoint's variables onto f2n's RRDBNet and MaskNet, checking that every
    one is there with its shape and dtype, and that nothing unknown is (module docstring)."""
    if any(marker in name for name in shapes for marker in TF2_MARKERS):
        raise WeightsError(f"{source} is a TF2 object-based checkpoint (tf.train.Checkpoint), expected the TF1 "
                           "name-based checkpoint (tf.compat.v1.train.Saver) of the official MetaF2N")
    sr: dict[str, str] = {}
    masknet: dict[str, str] = {}
    for variable in sorted(shapes):
        if IGNORED.match(variable):
            continue
        mask = MASK_VARIABLE.match(variable)
        if variable.startswith(SR_SCOPE):
            sr[variable[len(SR_SCOPE):].replace("/", ".")] = variable
        elif mask:
            masknet[f"body.{2 * (int(mask[1]) - 1)}.{'weight' if mask[2] == 'kernel' else 'bias'}"] = variable
        else:
            raise WeightsError(f"{source}: unexpected variable {variable} {list(shapes[variable])}; "
                               "not part of the official MetaF2N checkpoint (MODEL/…, Mask/…)")
    sr_net = _build(RRDBNet, _rrdbnet_hyperparameters(sr, shapes, source))
    mask_net = _build(MaskNet, _masknet_hyperparameters(masknet, shapes, source))
    _check(sr_net, sr, shapes, dtypes, source, lambda name: SR_SCOPE + name.replace(".", "/"))
    _check(mask_net, masknet, shapes, dtypes, source, _mask_variable_name)
    return ImportPlan(sr, masknet)


def hwio_to_torch(array: np.ndarray) -> torch.Tensor:
    """A TF conv kernel (H, W, in, out) as PyTorch's (out, in, H, W); other arrays as they are."""
    if array.ndim == 4:
        array = array.transpose(3, 2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(array))


def _rrdbnet_hyperparameters(sr: Mapping[str, str], shapes: Mapping[str, Sequence[int]], source: Path | str) -> dict[str, int]:
    needed = ("conv_first.weight", "conv_last.weight", "body.0.rdb1.conv1.weight")
    for name in needed:
        if name not in sr:
            raise WeightsError(f"{source}: missing variable {SR_SCOPE}{name.replace('.', '/')}")
    first, last, grow = (shapes[sr[name]] for name in needed)
    return {"num_in_ch": first[2], "num_out_ch": last[3], "num_feat": first[3], "num_grow_ch": grow[3],
            "num_block": 1 + max(int(m[1]) for m in map(SR_BLOCK.match, sr) if m)}


def _masknet_hyperparameters(masknet: Mapping[str, str], shapes: Mapping[str, Sequence[int]],
                             source: Path | str) -> dict[str, int]:
    if "body.0.weight" not in masknet:
        raise WeightsError(f"{source}: missing variable {MASK_SCOPE}conv1/kernel")
    first = shapes[masknet["body.0.weight"]]
    return {"in_channels": first[2], "num_feat": first[3], "num_layers": sum(name.endswith(".weight") for name in masknet)}


def _mask_variable_name(name: str) -> str:
    index, kind = name.removeprefix("body.").split(".")
    return f"{MASK_SCOPE}conv{int(index) // 2 + 1}/{'kernel' if kind == 'weight' else 'bias'}"


def _build(network: type[nn.Module], hyperparameters: Mapping[str, int]) -> nn.Module:
    try:
        with torch.device("meta"):
            return network(**hyperparameters)
    except ValueError as error:
        raise WeightsError(f"cannot build {network.__name__} from the checkpoint's shapes: {error}") from None


def _check(network: nn.Module, plan: Mapping[str, str], shapes: Mapping[str, Sequence[int]],
           dtypes: Mapping[str, str], source: Path | str, tf_name: Any) -> None:
    expected = network.state_dict()
    for name in sorted(set(plan) - set(expected)):
        raise WeightsError(f"{source}: unexpected variable {plan[name]} for a {type(network).__name__} "
                           f"read as {_describe(network)}")
    for name, tensor in expected.items():
        if name not in plan:
            raise WeightsError(f"{source}: missing variable {tf_name(name)} of {type(network).__name__} ({_describe(network)})")
        want = list(tensor.shape if tensor.ndim != 4 else (*tensor.shape[2:], tensor.shape[1], tensor.shape[0]))
        got = list(shapes[plan[name]])
        if got != want:
            raise WeightsError(f"{source}: variable {plan[name]} has shape {got}, expected {want} (HWIO)")
        if dtypes.get(plan[name], "float32") != "float32":
            raise WeightsError(f"{source}: variable {plan[name]} is {dtypes[plan[name]]}, expected float32")


def _describe(network: nn.Module) -> str:
    if isinstance(network, RRDBNet):
        return f"{len(network.body)} blocks, {network.conv_first.out_channels} features"
    return f"{sum(isinstance(m, nn.Conv2d) for m in network.modules())} convs"


def _step_from_name(prefix: Path) -> int | None:
    found = STEP_IN_NAME.search(prefix.name)
    return int(found[1]) if found else None


def _step_or(prefix: Path, default: int) -> int:
    step = _step_from_name(prefix)
    return default if step is None else step


def import_tensorflow() -> Any:
    """The ``tensorflow`` module, or one WeightsError saying how to install it."""
    if importlib.util.find_spec("triton") is not None:
        # triton imported after TensorFlow 2.21 segfaults the process (seen with torch
        # 2.14's triton): load it first, so torch.compile still works in this process.
        importlib.import_module("triton")
    try:
        with quiet_native_stderr():
            import tensorflow as tf
    except ImportError:
        raise WeightsError(INSTALL_HINT) from None
    return tf


def _open_reader(prefix: Path) -> Any:
    """TensorFlow's own checkpoint reader; TF imported here, and only here."""
    tf = import_tensorflow()
    try:
        return tf.train.load_checkpoint(str(prefix))
    except (tf.errors.OpError, ValueError, OSError) as error:
        raise WeightsError(f"cannot read TensorFlow checkpoint {prefix} ({_first_line(error)}); "
                           "the .index or .data file is corrupt or truncated") from None


def _read(reader: Any, variable: str, prefix: Path) -> np.ndarray:
    import tensorflow as tf

    try:
        return np.asarray(reader.get_tensor(variable))
    except (tf.errors.OpError, ValueError, OSError, IndexError) as error:  # IndexError: a short .data file
        raise WeightsError(f"cannot read variable {variable} from {prefix} ({_first_line(error)}); "
                           "the .data file is corrupt or truncated") from None


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:200] if lines else type(error).__name__
