"""Writing an evaluation: a Markdown and a CSV table (method x metric, mean and per photo)
and one side-by-side crops PNG per photo (LQ, bicubic, base, adapted, GT)."""

from __future__ import annotations

import csv
import io
import math
import textwrap
from pathlib import Path

import cv2
import numpy as np

from f2n.eval.run import EvalResult, PhotoResult
from f2n.fileio import write_text_atomic
from f2n.runtime import write_image

METRICS = ("psnr", "ssim", "lpips", "niqe", "psnr_nonface", "ssim_nonface", "niqe_nonface")
CROP = 192  # GT pixels per crop side
BANNER = 32  # label rows above each crop


def methods(result: EvalResult) -> list[str]:
    seen: dict[str, None] = {}
    for photo in result.photos:
        seen.update(dict.fromkeys(photo.metrics))
    return list(seen)


def metric_columns(result: EvalResult) -> list[str]:
    present = {m for photo in result.photos for row in photo.metrics.values() for m in row}
    return [m for m in METRICS if m in present]


def means(result: EvalResult) -> dict[str, dict[str, float]]:
    """Mean over photos of each (method, metric); NaN-free values only."""
    table: dict[str, dict[str, float]] = {}
    for method in methods(result):
        for metric in metric_columns(result):
            values = [p.metrics[method][metric] for p in result.photos
                      if method in p.metrics and math.isfinite(p.metrics[method].get(metric, math.nan))]
            table.setdefault(method, {})[metric] = float(np.mean(values)) if values else math.nan
    return table


def _fmt(metric: str, value: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    return f"{value:.4f}" if metric.startswith(("ssim", "lpips")) else f"{value:.2f}"


def markdown(result: EvalResult) -> str:
    m = result.manifest
    cols = metric_columns(result)
    head = f"| method | {' | '.join(cols)} |\n|---|{'---|' * len(cols)}\n"
    lines = [f"## f2n-eval: {m['kind']} set (seed {m['seed']}, x{m['scale']}, {len(result.photos)} photos)", "",
             "Mean over photos. PSNR/SSIM on Y, border cropped by the scale; `_nonface`: face boxes "
             "(detector on the LQ, x4) masked out. Higher is better except NIQE and LPIPS.", "", head.rstrip("\n")]
    for method, row in means(result).items():
        lines.append(f"| {method} | {' | '.join(_fmt(c, row[c]) for c in cols)} |")
    for photo in result.photos:
        lines += ["", f"### {photo.name} ({len(photo.face_boxes)} face boxes)", "", head.rstrip("\n")]
        for method, row in photo.metrics.items():
            lines.append(f"| {method} | {' | '.join(_fmt(c, row.get(c, math.nan)) for c in cols)} |")
        lines += [f"- {note}" for note in photo.notes]
    if result.not_run:
        lines += ["", "Not in the table:", ""] + [f"- {k}: {v}" for k, v in sorted(result.not_run.items())]
    return "\n".join(lines) + "\n"


def csv_text(result: EvalResult) -> str:
    cols = metric_columns(result)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image", "method", *cols])
    for photo in result.photos:
        for method, row in photo.metrics.items():
            writer.writerow([photo.name, method, *(repr(row.get(c, math.nan)) for c in cols)])
    for method, row in means(result).items():
        writer.writerow(["mean", method, *(repr(row[c]) for c in cols)])
    return buffer.getvalue()


def crop_window(photo: PhotoResult, scale: int) -> tuple[int, int, int]:
    """(top, left, side) in GT pixels: around the largest face, else the centre."""
    h, w = photo.gt.shape[:2]
    side = min(CROP, h, w)
    if photo.face_boxes:
        x0, y0, x1, y1 = max(photo.face_boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
        cy, cx = (y0 + y1) / 2 * scale, (x0 + x1) / 2 * scale
    else:
        cy, cx = h / 2, w / 2
    top = int(np.clip(round(cy - side / 2), 0, h - side))
    left = int(np.clip(round(cx - side / 2), 0, w - side))
    return top, left, side


def crops_image(photo: PhotoResult, adapted: list[str], scale: int) -> np.ndarray:
    """LQ (nearest x4), bicubic, base, the given adapted methods, GT; labelled, side by side."""
    top, left, side = crop_window(photo, scale)
    lq_x4 = cv2.resize(photo.lq, (photo.lq.shape[1] * scale, photo.lq.shape[0] * scale), interpolation=cv2.INTER_NEAREST)
    panels = [("LQ", lq_x4), ("bicubic", photo.outputs["bicubic"])]
    panels += [(m, photo.outputs[m]) for m in photo.outputs if m.endswith(" base")]
    panels += [(m, photo.outputs[m]) for m in adapted if m in photo.outputs]
    panels.append(("GT", photo.gt))
    tiles = []
    for label, image in panels:
        tile = image[top : top + side, left : left + side]
        banner = np.full((BANNER, side, 3), 255, np.uint8)
        for row, text in enumerate(textwrap.wrap(label, width=max(8, side // 7))[:2]):
            cv2.putText(banner, text, (3, 13 + 14 * row), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(np.concatenate([banner.astype(np.float32) / 255, tile], axis=0))
    return np.concatenate(tiles, axis=1)


def write_report(result: EvalResult, out_dir: Path) -> dict[str, Path]:
    """results.md, results.csv and crops/NAME.png in ``out_dir``; returns their paths."""
    scale = int(result.manifest["scale"])
    (out_dir / "crops").mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out_dir / "results.md", "csv": out_dir / "results.csv"}
    write_text_atomic(paths["markdown"], markdown(result))
    write_text_atomic(paths["csv"], csv_text(result))
    for photo in result.photos:
        path = out_dir / "crops" / f"{photo.name}.png"
        write_image(path, crops_image(photo, list(photo.most_adapted), scale))
        paths[f"crops:{photo.name}"] = path
    return paths
