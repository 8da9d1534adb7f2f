"""``f2n-adapt-and-run --demo``: scikit-image's astronaut photo as ground truth, a fixed
known degradation, and the PSNR of bicubic, the base network and the adapted network.

The oracle prior (the ground-truth face itself) is an upper bound for any face prior;
GPEN runs too when its weights are installed. The photo is cropped around the face so
the demo takes minutes, not hours, on a CPU.
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
import cv2
import numpy as np
import skimage.data

from f2n.console import EXIT_DEMO_LOST
from f2n.errors import InputImageError, WeightsError
from f2n.export.engines import make_engine
from f2n.nets.rrdbnet import ValueRange
from f2n.runtime.adapt import AdaptConfig
from f2n.runtime.build import AdaptationSettings, build_pipeline, load_supported_network
from f2n.runtime.face_patches import PatchConfig
from f2n.runtime.face_prior import FacePrior, OraclePrior, OracleRestoredPrior
from f2n.runtime.face_regions import mask_canvas
from f2n.runtime.face_stage import Detector
from f2n.weights import LoadedSR

# Ground-truth crop of the 512 x 512 astronaut, (y0, y1, x0, x1): the face and some suit.
CROP = (0, 256, 96, 352)
BLUR_SIGMA = 1.2  # ground-truth pixels
NOISE_SIGMA = 3 / 255
JPEG_QUALITY = 60
SEED = 0
DEMO_TILE = 512  # LR pixels: the whole 64 x 64 crop in one tile
DEMO_DEFAULTS = AdaptationSettings(patches=PatchConfig(count=8))  # where neither the user nor the checkpoint says


def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> float:
    diff = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    mse = float(diff.mean() if where is None else diff[where].mean())
    return float(10 * np.log10(1.0 / max(mse, 1e-12)))


def region_psnrs(sr: np.ndarray, gt: np.ndarray, face_mask: np.ndarray) -> dict[str, float]:
    """Whole image, faces (soft paste mask > 0.5) and non-face (mask exactly 0)."""
    return {"whole": psnr(sr, gt), "face": psnr(sr, gt, face_mask > 0.5), "nonface": psnr(sr, gt, face_mask == 0)}


def demo_pair(crop: tuple[int, int, int, int] = CROP) -> tuple[np.ndarray, np.ndarray]:
    """(ground truth, LQ): blur, bicubic x4 down, Gaussian noise, JPEG; float32 RGB."""
    y0, y1, x0, x1 = crop
    gt = skimage.data.astronaut()[y0:y1, x0:x1].astype(np.float32) / 255
    height, width = gt.shape[:2]
    lq = cv2.resize(cv2.GaussianBlur(gt, (0, 0), BLUR_SIGMA), (width // 4, height // 4), interpolation=cv2.INTER_CUBIC)
    lq = lq + np.random.default_rng(SEED).normal(0, NOISE_SIGMA, lq.shape).astype(np.float32)
    encoded = cv2.imencode(".jpg", cv2.cvtColor(np.clip(lq * 255 + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1]
    lq = cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB).astype(np.float32) / 255
    return gt, lq


def evaluate(checkpoint: str | Path | LoadedSR, detector: Detector, priors: Mapping[str, FacePrior], gt: np.ndarray,
             lq: np.ndarray, *, device: str = "cpu", requested: Mapping[str, Any] | None = None,
             ) -> tuple[dict[str, dict[str, float]], AdaptConfig]:
    """PSNR (whole / non-face / face) of bicubic, the base network and one adapted run per
    prior, and the adaptation settings they ran with (the checkpoint's unless ``requested``)."""
    loaded = load_supported_network(checkpoint)
    engine = make_engine("torch", loaded, device=device, precision="fp32", tile=DEMO_TILE)
    common = dict(engine=engine, device=device, precision="fp32", requested=requested, detector=detector,
                  defaults=DEMO_DEFAULTS, tile=DEMO_TILE, overlap=0)
    runs = {name: build_pipeline(loaded, prior=prior, **common) for name, prior in priors.items()}
    adapted = {name: run.enhance(lq) for name, run in runs.items()}
    first = next(iter(adapted.values()))
    if first.faces is None or not first.faces.regions:
        raise InputImageError(f"demo: no usable face found in the astronaut crop ({first.reason})")
    mask = mask_canvas(first.faces.regions, gt.shape[:2])
    base = build_pipeline(loaded, adapt_enabled=False, **common).enhance(lq)
    height, width = lq.shape[:2]
    bicubic = np.clip(cv2.resize(lq, (width * 4, height * 4), interpolation=cv2.INTER_CUBIC), 0, 1)
    rows = {"bicubic": region_psnrs(bicubic, gt, mask), "base network": region_psnrs(base.rgb, gt, mask)}
    for name, result in adapted.items():
        kept_base = " [guard: base weights]" if result.adaptation is None else ""
        rows[f"adapted ({name}){kept_base}"] = region_psnrs(result.rgb, gt, mask)
    return rows, next(iter(runs.values())).config.adapt


def run_demo(*, device: str, checkpoint: str, requested: Mapping[str, Any] | None = None,
             sr_range: ValueRange | None = None) -> int:
    """The CLI's --demo: prints the PSNR table; exit code 7 (EXIT_DEMO_LOST) if adaptation did not beat the base.
    The checkpoint's adaptation settings apply unless ``requested`` overrides them; ``sr_range``:
    ``--sr-range``."""
    from f2n.runtime.face_detect import RetinaFaceDetector
    from f2n.runtime.face_prior import load_prior_file
    from f2n.weights import weight_path

    gt, lq = demo_pair()
    loaded = load_supported_network(checkpoint, value_range=sr_range)
    priors: dict[str, FacePrior] = {"oracle prior, upper bound": OraclePrior(gt),
                                    "oracle-restored, realistic": OracleRestoredPrior(gt, loaded.model.to(device))}
    try:  # only when already installed: the demo never downloads
        priors["GPEN"] = load_prior_file(weight_path("gpen-bfr-512", allow_download=False), device=device,
                                         architecture="gpen")
    except WeightsError as error:
        click.echo(f"GPEN skipped (weights not installed): {error}", err=True)
    click.echo(f"demo: astronaut crop, GT {gt.shape[1]}x{gt.shape[0]}, LQ {lq.shape[1]}x{lq.shape[0]} "
               f"(blur σ {BLUR_SIGMA}, bicubic x4 down, noise σ {NOISE_SIGMA * 255:.0f}/255, JPEG q{JPEG_QUALITY})")
    rows, config = evaluate(loaded, RetinaFaceDetector(), priors, gt, lq, device=device, requested=requested)
    click.echo(f"adaptation {config.optimizer} α={config.lr:g} n={config.steps} on {device}")
    click.echo(format_table(rows))
    best = max(value["whole"] for name, value in rows.items() if name.startswith("adapted"))
    verdict = best > rows["base network"]["whole"]
    click.echo("adapted beats base" if verdict else "adaptation did NOT beat the base network", err=not verdict)
    return 0 if verdict else EXIT_DEMO_LOST


def format_table(rows: Mapping[str, Mapping[str, float]]) -> str:
    lines = [f"{'PSNR dB vs ground truth':58s} {'whole':>7s} {'non-face':>9s} {'face':>7s}"]
    lines += [f"{name:58s} {v['whole']:7.2f} {v['nonface']:9.2f} {v['face']:7.2f}" for name, v in rows.items()]
    return "\n".join(lines)
