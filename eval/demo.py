"""``f2n-adapt-and-run --demo``: scikit-image's astronaut photo as ground truth, a fixed
known degradation, and the PSNR of bicubic, the base network and the adapted network.

The oracle prior (the ground-truth face itself) is an upper bound for any face prior;
GPEN runs too when its weights are installed. The photo is cropped around the face so
the demo takes minutes, not hours, on a CPU. Beside PSNR it prints NIQE (lower is more
natural) and writes a side-by-side picture (bicubic | base | adapted | ground truth, with a
zoomed crop of the suit) into ``--out``: a score alone does not say whether a photo looks better.
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
from f2n.eval.metrics import niqe_y
from f2n.export.engines import make_engine
from f2n.nets.rrdbnet import ValueRange
from f2n.runtime.adapt import AdaptConfig
from f2n.runtime.build import AdaptationSettings, build_pipeline, load_supported_network
from f2n.runtime.face.patches import PatchConfig
from f2n.runtime.face.prior import FacePrior, OraclePrior, OracleRestoredPrior
from f2n.runtime.face.regions import mask_canvas
from f2n.runtime.face.stage import Detector
from f2n.runtime.images import write_image
from f2n.runtime.psnr import psnr
from f2n.weights import LoadedSR

# Ground-truth crop of the 512 x 512 astronaut, (y0, y1, x0, x1): the face and some suit.
CROP = (0, 256, 96, 352)
BLUR_SIGMA = 1.2  # ground-truth pixels
NOISE_SIGMA = 3 / 255
JPEG_QUALITY = 60
SEED = 0
DEMO_TILE = 512  # LR pixels: the whole 64 x 64 crop in one tile
DEMO_DEFAULTS = AdaptationSettings(patches=PatchConfig(count=8))  # where neither the user nor the checkpoint says
ZOOM_BOX = (160, 224, 24, 88)  # GT pixels (y0, y1, x0, x1) of the crop: suit and patch, away from the face
ZOOM = 4  # the 64-px crop fills the 256-px column
PICTURE_NAME = "demo_comparison.png"


def region_psnrs(sr: np.ndarray, gt: np.ndarray, face_mask: np.ndarray) -> dict[str, float]:
    """Whole image, faces (soft paste mask > 0.5) and non-face (mask exactly 0)."""
    return {"whole": psnr(sr, gt), "face": psnr(sr, gt, where=face_mask > 0.5),
            "nonface": psnr(sr, gt, where=face_mask == 0)}


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
             ) -> tuple[dict[str, dict[str, float]], AdaptConfig, dict[str, np.ndarray]]:
    """PSNR (whole / non-face / face) and NIQE (whole) of bicubic, the base network and one
    adapted run per prior, the adaptation settings they ran with (the checkpoint's unless
    ``requested``), and the images by row name."""
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
    images = {"bicubic": bicubic, "base network": base.rgb}
    for name, result in adapted.items():
        kept_base = " [guard: base weights]" if result.adaptation is None else ""
        images[f"adapted ({name}){kept_base}"] = result.rgb
    rows = {name: {**region_psnrs(image, gt, mask), "niqe": niqe_y(quantised(image))} for name, image in images.items()}
    return rows, next(iter(runs.values())).config.adapt, images


def quantised(rgb: np.ndarray) -> np.ndarray:
    """As an 8-bit file would hold it: what a person (and NIQE) sees."""
    return np.round(np.clip(rgb, 0, 1) * 255) / 255


def comparison_picture(panels: Mapping[str, np.ndarray], zoom_box: tuple[int, int, int, int] = ZOOM_BOX,
                       zoom: int = ZOOM) -> np.ndarray:
    """(H, W, 3) uint8 RGB: the panels side by side with their names, and below each the same
    ``zoom_box`` crop enlarged ``zoom``× without smoothing (pixels as they are)."""
    y0, y1, x0, x1 = zoom_box
    columns = []
    for name, image in panels.items():
        full = np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)
        crop = full[y0:y1, x0:x1].repeat(zoom, axis=0).repeat(zoom, axis=1)
        framed = full.copy()
        cv2.rectangle(framed, (x0, y0), (x1 - 1, y1 - 1), (255, 0, 0), 1)
        crop = cv2.resize(crop, (full.shape[1], round(crop.shape[0] * full.shape[1] / crop.shape[1])),
                          interpolation=cv2.INTER_NEAREST)
        label = np.full((20, full.shape[1], 3), 255, np.uint8)
        cv2.putText(label, name[:32], (3, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        columns.append(np.concatenate([label, framed, crop], axis=0))
    gap = np.full((columns[0].shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([part for column in columns for part in (column, gap)][:-1], axis=1)


def picture_path(out: Path | None) -> Path:
    """Where the demo's picture goes: ``--out`` as a PNG name, else into the ``--out`` folder [f2n_out]."""
    if out is not None and out.suffix.lower() == ".png":
        return out
    return (out or Path("f2n_out")) / PICTURE_NAME


def run_demo(*, device: str, checkpoint: str, requested: Mapping[str, Any] | None = None,
             sr_range: ValueRange | None = None, out: Path | None = None) -> int:
    """The CLI's --demo: prints the PSNR and NIQE table and writes the comparison picture
    (``picture_path(out)``); exit code 7 (EXIT_DEMO_LOST) if adaptation did not beat the base.
    The checkpoint's adaptation settings apply unless ``requested`` overrides them; ``sr_range``:
    ``--sr-range``."""
    from f2n.runtime.face.detect import RetinaFaceDetector
    from f2n.runtime.face.prior import load_prior_file
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
    rows, config, images = evaluate(loaded, RetinaFaceDetector(), priors, gt, lq, device=device, requested=requested)
    click.echo(f"adaptation {config.optimizer} α={config.lr:g} n={config.steps} on {device}, "
               f"objective {config.objective}, strength {config.strength:g}")
    click.echo(format_table(rows))
    realistic = next((name for name in images if "realistic" in name), list(images)[-1])
    label = "adapted (realistic prior)" if "realistic" in realistic else "adapted"
    panels = {"bicubic": images["bicubic"], "base network": images["base network"], label: images[realistic],
              "ground truth": gt}
    picture = picture_path(out)
    picture.parent.mkdir(parents=True, exist_ok=True)
    write_image(picture, comparison_picture(panels).astype(np.float32) / 255)
    click.echo(f"side by side (bicubic | base | {realistic} | ground truth, zoomed crop below): {picture}")
    best = max(value["whole"] for name, value in rows.items() if name.startswith("adapted"))
    verdict = best > rows["base network"]["whole"]
    click.echo("adapted beats base" if verdict else "adaptation did NOT beat the base network", err=not verdict)
    return 0 if verdict else EXIT_DEMO_LOST


def format_table(rows: Mapping[str, Mapping[str, float]]) -> str:
    lines = [f"{'PSNR dB vs ground truth; NIQE (lower: more natural)':58s} {'whole':>7s} {'non-face':>9s} {'face':>7s} "
             f"{'NIQE':>6s}"]
    lines += [f"{name:58s} {v['whole']:7.2f} {v['nonface']:9.2f} {v['face']:7.2f} {v['niqe']:6.2f}"
              for name, v in rows.items()]
    return "\n".join(lines)
