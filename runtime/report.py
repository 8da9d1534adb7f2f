"""What one run of f2n-adapt-and-run did to one photo, as data and as JSON."""

import json
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from f2n.fileio import write_text_atomic
from f2n.runtime.types import FaceReport

Status = Literal["ok", "skipped", "failed"]


@dataclass(frozen=True)
class RunReport:
    """Per-photo record. ``timings`` in seconds, keyed by stage (``decode``,
    ``face.detect`` …, ``adapt.step_1`` …, ``adapt``, ``set_weights``, ``tile``,
    ``paste``, ``encode``, ``total``). ``reason`` says why the photo was not adapted,
    skipped or failed (empty when adapted and written); ``method`` which adaptation
    method made its θ′ (``faces`` or ``cmdsr``; empty when not adapted); ``warnings`` what
    the output does not carry over from the input (frames after the first, a mismatched ICC profile)."""

    input: str
    output: str | None
    status: Status
    adapted: bool
    reason: str = ""
    method: str = ""
    faces_found: int = 0
    faces_used: int = 0
    faces: tuple[dict[str, Any], ...] = ()
    losses: tuple[float, ...] = ()
    timings: Mapping[str, float] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    # how θ′ was made, kept or refused: objective, strength, held-out losses, the guards' figures
    adaptation: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def face_summary(face: FaceReport) -> dict[str, Any]:
    return {"box": list(face.box), "score": round(face.score, 4), "used": face.used,
            "reason": face.reason, "num_patches": face.num_patches}


def summarise(reports: Sequence[RunReport]) -> dict[str, int]:
    counts = {status: sum(r.status == status for r in reports) for status in ("ok", "skipped", "failed")}
    counts["adapted"] = sum(r.adapted for r in reports)
    return counts


def write_report_json(path: str | Path, reports: Sequence[RunReport], engine: Mapping[str, str] | None = None) -> None:
    """All photos' reports plus a summary (and the engine chosen, and why), written atomically
    as strict JSON (NaN/Inf become null)."""
    payload = {"summary": summarise(reports), **({"engine": dict(engine)} if engine else {}),
               "photos": [report.to_dict() for report in reports]}
    text = json.dumps(strict_json(payload), indent=2, allow_nan=False)
    write_text_atomic(Path(path), text + "\n")


def strict_json(value: Any) -> Any:
    """``value`` with every number a JSON number: numpy scalars as Python numbers, NaN/Inf as None
    (``json.dumps`` would write ``NaN``, which JSON parsers refuse)."""
    if isinstance(value, Mapping):
        return {str(key): strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    if isinstance(value, (bool, str)) or value is None:
        return value
    if hasattr(value, "tolist"):  # numpy / torch scalars and arrays
        return strict_json(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int):
        return value
    return str(value)


@contextmanager
def timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    """Add the seconds spent in the block to ``timings[stage]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start
