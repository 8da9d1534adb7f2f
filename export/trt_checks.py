"""Reading what TensorRT reports, as plain functions (no TensorRT import): which
precision the built engine's convolutions really run in, why a plan did not
deserialise, and whether a failed run was out of memory.

TensorRT says most of this only through its logger, so the engine's process-wide
logger (:mod:`f2n.export.trt_engine`) keeps the recent error lines for these checks.
"""

import re
from collections import Counter
from collections.abc import Iterable, Mapping

from f2n.errors import EngineUnavailableError

# Engine inspector (ProfilingVerbosity.DETAILED): a layer's outputs name their dtype in
# "Format/Datatype" (TensorRT 10: "Channel major FP16 format ...") or in "DataType"
# (TensorRT 11 split the field: "Half", "Float", "BFloat16").
_PRECISION_WORDS = (("bf16", ("BF16", "BFLOAT16")), ("fp16", ("FP16", "HALF")), ("fp32", ("FP32", "FLOAT")))
REDUCED_SHARE = 0.5  # at least this share of the convolutions must run in the asked precision


def layer_precision(layer: Mapping) -> str:
    """fp32/fp16/bf16 of a layer's first output, or "unknown"."""
    outputs = layer.get("Outputs") or [{}]
    text = str(outputs[0].get("DataType") or outputs[0].get("Format/Datatype") or "").upper()
    words = set(re.findall(r"[A-Z0-9]+", text))
    return next((precision for precision, names in _PRECISION_WORDS if words & set(names)), "unknown")


def convolution_precisions(engine_information: Mapping) -> Counter:
    """How many convolution layers of the engine run in each precision."""
    layers = [layer for layer in engine_information.get("Layers", []) if isinstance(layer, Mapping)]
    return Counter(layer_precision(layer) for layer in layers if "CONVOLUTION" in str(layer.get("LayerType", "")).upper())


def check_engine_precision(engine_information: Mapping, precision: str) -> None:
    """Refuse an fp16/bf16 engine whose convolutions mostly run in another precision
    (a build that silently fell back to fp32 would pass every other check)."""
    counts = convolution_precisions(engine_information)
    total = sum(counts.values())
    if precision == "fp32" or total == 0:  # an inspector without layer details proves nothing either way
        return
    if counts[precision] < REDUCED_SHARE * total:
        shown = ", ".join(f"{count} {name}" for name, count in counts.most_common())
        raise EngineUnavailableError(f"the TensorRT {precision} engine runs its {total} convolutions as {shown}, expected mostly {precision}")


_DESERIALISATION_CAUSES = (
    (("incompatible device",), "it was built for another GPU"),
    (("not compatible with this version", "version tag does not match", "current version"), "it was built by another TensorRT version"),
    (("magic tag",), "it is not a TensorRT plan (or a damaged one)"),
)


def deserialisation_failure(plan_size: int, errors: Iterable[str]) -> str:
    """One line saying why a plan did not deserialise, from TensorRT's logged errors."""
    errors = list(errors)
    text = " ".join(errors).lower()
    if plan_size == 0:
        return "the TensorRT plan is empty"
    cause = next((reason for needles, reason in _DESERIALISATION_CAUSES if any(n in text for n in needles)), None)
    if cause is not None:
        return f"the TensorRT plan cannot be loaded: {cause}; delete it (or let f2n rebuild its cache) and build it here"
    detail = errors[0] if errors else "TensorRT logged no reason"
    return f"the TensorRT plan cannot be loaded ({detail})"


def trt_out_of_memory(errors: Iterable[str]) -> bool:
    """True when TensorRT's logged errors report an allocation failure ("Error Code 2: OutOfMemory ...")."""
    return any(re.search(r"out\s*of\s*memory|cudaErrorMemoryAllocation|failed to allocate", e, re.IGNORECASE) for e in errors)
