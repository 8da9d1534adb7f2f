"""What a person reads off one run: the faces found (boxes on the photo), where the adaptation
looked and how much each place counted (MaskNet's weights as a heat map), and the figures
(faces used, steps taken, what the guard decided and why, seconds per stage)."""

from collections.abc import Mapping

import cv2
import numpy as np

from f2n.runtime.report import RunReport
from f2n.runtime.types import FaceStageResult

VIEW_SIDE = 512  # small photos are shown enlarged (nearest) so boxes and labels stay readable
USED, REJECTED = (40, 200, 60), (230, 60, 40)  # RGB


def _enlarged(rgb: np.ndarray) -> tuple[np.ndarray, int]:
    factor = max(1, VIEW_SIDE // max(rgb.shape[:2]))
    picture = (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)
    return cv2.resize(picture, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST), factor


def faces_picture(rgb: np.ndarray, faces: FaceStageResult | None) -> np.ndarray:
    """The photo (uint8 RGB) with each detected face boxed: green when used, red when rejected."""
    picture, factor = _enlarged(rgb)
    thickness = max(2, picture.shape[0] // 200)
    for number, face in enumerate(faces.faces if faces is not None else (), start=1):
        x0, y0, x1, y1 = (factor * value for value in face.box)
        colour = USED if face.used else REJECTED
        cv2.rectangle(picture, (x0, y0), (x1, y1), colour, thickness)
        cv2.putText(picture, str(number), (x0 + thickness, max(y0 - 2 * thickness, 12)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.5 + picture.shape[0] / 1000, colour, thickness)
    return picture


def mask_heatmap(rgb: np.ndarray, faces: FaceStageResult | None) -> np.ndarray | None:
    """The photo in grey with each face patch pair coloured by its mean MaskNet weight (blue low,
    red high; overlapping patches averaged); None when no pair was made."""
    if faces is None or faces.patches is None or faces.patch_boxes is None:
        return None
    height, width = rgb.shape[:2]
    total, count = np.zeros((height, width), np.float32), np.zeros((height, width), np.float32)
    weights = faces.patches.weight.mean(dim=(1, 2, 3)).numpy()
    for (x0, y0, x1, y1), weight in zip(faces.patch_boxes.astype(int), weights, strict=True):
        total[y0:y1, x0:x1] += weight
        count[y0:y1, x0:x1] += 1
    covered = count > 0
    level = np.zeros_like(total)
    level[covered] = total[covered] / count[covered]
    top = level.max()
    colours = cv2.applyColorMap((255 * level / (top if top > 0 else 1)).astype(np.uint8), cv2.COLORMAP_JET)
    grey = cv2.cvtColor((np.clip(rgb, 0, 1) * 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)
    picture = np.repeat(grey[..., None], 3, axis=2)
    blended = (0.45 * picture + 0.55 * cv2.cvtColor(colours, cv2.COLOR_BGR2RGB)).astype(np.uint8)
    picture[covered] = blended[covered]
    return _enlarged(picture.astype(np.float32) / 255)[0]


def summary(report: RunReport) -> str:
    """The run in a few lines of Markdown."""
    adapt = report.settings.get("adapt", {})
    steps = sorted(stage for stage in report.timings if stage.startswith("adapt.step_"))
    lines = [f"**{'Adapted' if report.adapted else 'Not adapted'}**"
             + (f" with {report.method}" if report.method else "") + (f": {report.reason}" if report.reason else ""),
             f"- faces found: {report.faces_found}, used: {report.faces_used}"]
    for number, face in enumerate(report.faces, start=1):
        if not face["used"]:
            lines.append(f"  - face {number} not used: {face['reason']}")
    if steps:
        lines.append(f"- steps taken: {len(steps)} of at most {adapt.get('steps')}"
                     f" ({adapt.get('optimizer')}, lr {adapt.get('lr')}, {adapt.get('params')})")
    if report.losses:
        lines.append(f"- training loss: {report.losses[0]:.4f} at the start, {report.losses[-1]:.4f} at the last step")
    lines.append(f"- guard: {_guard(report, bool(steps))}")
    lines.append(f"- prior: {report.settings.get('prior')}, mask: {report.settings.get('mask')}, "
                 f"engine: {report.settings.get('engine')}")
    lines += [f"- warning: {warning}" for warning in report.warnings]
    lines += ["", "| stage | seconds |", "| --- | ---: |", *_stage_rows(report.timings)]
    return "\n".join(lines)


def _guard(report: RunReport, stepped: bool) -> str:
    if not report.settings.get("adapt", {}).get("guard", False):
        return "off (--no-guard)"
    if not stepped:
        return "not reached (no adaptation ran)"
    if report.adapted:
        return "kept the adapted weights: their held-out face loss beat the base network's"
    return f"kept the base network: {report.reason}"


def _stage_rows(timings: Mapping[str, float]) -> list[str]:
    """Top-level stages (``face.detect`` is folded into ``face``; steps into ``adapt``)."""
    stages: dict[str, float] = {}
    for stage, seconds in timings.items():
        if stage.startswith("adapt.step_"):
            continue
        key = stage.split(".")[0]
        stages[key] = stages.get(key, 0.0) + seconds
    return [f"| {stage} | {seconds:.2f} |" for stage, seconds in stages.items()]
