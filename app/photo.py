"""One photo through a built pipeline, for a person looking at it: the adapted result, the base
network's at the same size (to compare), bicubic x4, the face stage's findings and the report;
and the files a person downloads (the PNG, the JSON report, θ′)."""

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from f2n.runtime.adapt import AdaptStep
from f2n.runtime.images import DecodedImage, output_bit_depth, write_image
from f2n.runtime.pipeline import AdaptAndRun, Enhanced, save_adapted_weights
from f2n.runtime.report import RunReport, timed, write_report_json

Progress = Callable[[float, str], None]  # (fraction done, what runs now)


@dataclass(frozen=True)
class PhotoRun:
    """``base``: the base network's x4 (the adapted result itself when the photo was not adapted)."""

    name: str
    image: DecodedImage
    enhanced: Enhanced
    base: np.ndarray
    report: RunReport

    @property
    def adapted(self) -> bool:
        return self.enhanced.adaptation is not None

    @property
    def theta(self) -> Mapping[str, torch.Tensor] | None:
        """θ′ (canonical RRDBNet names), None when the base network ran."""
        return self.enhanced.adaptation.weights if self.adapted else None


def run_photo(pipeline: AdaptAndRun, image: DecodedImage, name: str, *, progress: Progress | None = None,
              compare: bool = True) -> PhotoRun:
    """Adapt and upscale ``image`` (called ``name``); ``compare``: also upscale it with the base
    network, for the side-by-side view (one more tiled pass, only when the photo was adapted)."""
    report_progress = progress or (lambda _fraction, _message: None)
    budget = pipeline.config.adapt.steps if pipeline.config.adapt_enabled else 0

    def on_step(step: AdaptStep) -> None:
        report_progress(0.1 + 0.6 * step.index / max(budget, 1), f"adaptation step {step.index} of at most {budget}")

    report_progress(0.0, "faces: detect, align, restore" if budget else "upscaling with the base network")
    timings: dict[str, float] = {}
    start = time.perf_counter()
    enhanced = pipeline.enhance(image.rgb, image.alpha, on_step=on_step)
    timings.update(enhanced.timings)
    base = enhanced.rgb
    if compare and enhanced.adaptation is not None:
        report_progress(0.75, "upscaling with the base network, to compare")
        with timed(timings, "compare_base"):
            base = np.clip(pipeline.upscale(image.rgb, pipeline.base_weights), 0.0, 1.0)
    timings["total"] = time.perf_counter() - start
    report_progress(1.0, "done")
    report = pipeline.report(Path(name), Path(output_name(name)), enhanced, timings, pipeline.config.seed,
                             image.warnings)
    return PhotoRun(name, image, enhanced, base, report)


def output_name(name: str) -> str:
    return f"{Path(name).stem}_x4.png"


def bicubic_x4(rgb: np.ndarray) -> np.ndarray:
    height, width = rgb.shape[:2]
    return np.clip(cv2.resize(rgb, (4 * width, 4 * height), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)


def save_outputs(run: PhotoRun, folder: Path) -> dict[str, Path]:
    """The PNG (with the input's alpha, bit depth, ICC profile and EXIF, as f2n-adapt-and-run
    writes it), the JSON report and θ′ (only when adapted), each written atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    image, enhanced = run.image, run.enhanced
    png = folder / output_name(run.name)
    bit_depth = output_bit_depth(png, image.bit_depth, image.alpha is not None)
    write_image(png, enhanced.rgb, alpha=enhanced.alpha, bit_depth=bit_depth,
                icc_profile=image.icc_profile, exif=image.exif, grayscale=image.was_grayscale)
    report = folder / f"{Path(run.name).stem}_report.json"
    write_report_json(report, [run.report])
    files = {"png": png, "report": report}
    if enhanced.adaptation is not None:
        files["theta"] = save_adapted_weights(folder / f"{Path(run.name).stem}_theta.safetensors", enhanced.adaptation,
                                              Path(run.name), enhanced.provenance, run.report.settings["sr_range"])
    return files
