"""ONNX initializer name <-> canonical RRDBNet weight key.

The TorchScript ONNX exporter (with ``do_constant_folding=False``) names initializers
exactly after the module's parameters, and onnxslim keeps those names; torch.export
based tools write ``conv_first.weight`` as ``p_conv_first_weight``. The map is computed
once per ONNX file and used by the ONNX Runtime engine and by TensorRT refit (whose
weight names are the ONNX initializer names)."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import onnx

from f2n.errors import WeightsError

SHOWN_NAMES = 3  # how many offending names an error message lists


@dataclass(frozen=True)
class WeightNameMap:
    """Both directions of the name map. Initializers that are no network weight
    (constants such as Resize scales) are not in it."""

    onnx_to_canonical: Mapping[str, str]
    canonical_to_onnx: Mapping[str, str]


def _normalized(name: str) -> str:
    """Spelling-independent form: ``p_body_0_rdb1_conv1_weight`` == ``body.0.rdb1.conv1.weight``."""
    return name.removeprefix("p_").replace(".", "_")


def map_initializers(model: onnx.ModelProto, canonical_keys: Iterable[str]) -> WeightNameMap:
    """Match every canonical key to one ONNX initializer (exact name first, then the
    torch.export spelling); raise WeightsError when a key has no initializer, because
    a weight that cannot be replaced would silently keep its exported value."""
    keys = tuple(canonical_keys)
    initializers = [init.name for init in model.graph.initializer]
    exact = set(initializers)
    by_normalized = {_normalized(name): name for name in initializers}
    canonical_to_onnx: dict[str, str] = {}
    for key in keys:
        name = key if key in exact else by_normalized.get(_normalized(key))
        if name is not None:
            canonical_to_onnx[key] = name
    missing = sorted(set(keys) - canonical_to_onnx.keys())
    if missing:
        raise WeightsError(
            f"{len(missing)} network weights have no ONNX initializer (e.g. {', '.join(missing[:SHOWN_NAMES])}); "
            "expected one per parameter: export with do_constant_folding=False"
        )
    return WeightNameMap(
        onnx_to_canonical={name: key for key, name in canonical_to_onnx.items()},
        canonical_to_onnx=canonical_to_onnx,
    )
