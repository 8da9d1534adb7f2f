"""Run every method on a test set and measure it.

Methods, per photo: bicubic; each network unadapted ("base"); each network adapted to the
photo's faces with each face prior, snapshotted after n steps for every n asked for. The
networks are Real-ESRGAN x4plus and any checkpoint given; the priors are the oracle (faces
cut from the ground truth: an upper bound for any prior) and GPEN when its weights are
installed. Each adapted output comes from the f2n-adapt-and-run pipeline itself
(:func:`f2n.runtime.build_pipeline`, the checkpoint's adaptation settings included); one
detection per photo, one restoration per (photo, prior) and one inner loop per (photo,
prior, network) serve all n: the pipeline's ``on_step`` hook snapshots θ on the way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from f2n.errors import ConfigError, WeightsError
from f2n.eval.metrics import (
    face_box_mask,
    load_lpips,
    metrics_table,
    niqe_problem,
    unavailable_metrics,
)
from f2n.eval.testset import load_test_set
from f2n.runtime import (
    DEFAULT_OVERLAP,
    DEFAULT_TILE,
    AdaptAndRun,
    Detections,
    Detector,
    FacePrior,
    FaceStageConfig,
    OraclePrior,
    SREngine,
    build_pipeline,
    load_supported_network,
    make_engine,
    make_prior,
    read_image,
    resolve_settings,
    select_faces,
)
from f2n.weights import LoadedSR

BASE_NETWORK = "realesrgan-x4plus"
PRIORS = ("oracle", "gpen")
DEFAULT_STEPS = (1, 10, 20)


@dataclass(frozen=True)
class EvalConfig:
    steps: tuple[int, ...] = ()  # (): DEFAULT_STEPS and each checkpoint's own n
    priors: tuple[str, ...] = PRIORS
    require_priors: bool = False  # False: a prior whose weights are absent is skipped (with the reason)
    base_network: str = BASE_NETWORK  # registry name or weight file
    checkpoints: tuple[str, ...] = ()
    device: str = "cpu"
    tile: int = DEFAULT_TILE
    overlap: int = DEFAULT_OVERLAP
    lpips: bool = True  # where the AlexNet weights are installed
    seed: int = 0  # patch sampling in the face stage

    def __post_init__(self) -> None:
        if self.steps and min(self.steps) < 1:
            raise ConfigError(f"adaptation steps are {self.steps}, expected one or more integers >= 1")
        unknown = set(self.priors) - set(PRIORS)
        if unknown or not self.priors:
            raise ConfigError(f"priors are {self.priors}, expected some of {PRIORS}")


@dataclass(frozen=True)
class Network:
    label: str
    loaded: LoadedSR
    engine: SREngine
    base: AdaptAndRun  # the network unadapted
    steps: tuple[int, ...]  # the step counts evaluated: --steps, else the defaults and the checkpoint's n


@dataclass(frozen=True)
class PhotoResult:
    name: str
    metrics: dict[str, dict[str, float]]  # method -> metric -> value
    outputs: dict[str, np.ndarray]  # method -> (H, W, 3) float32, 8-bit levels
    lq: np.ndarray
    gt: np.ndarray
    face_boxes: tuple[tuple[float, float, float, float], ...]  # LQ pixels
    most_adapted: tuple[str, ...]  # per (network, prior): the method with the most steps
    notes: tuple[str, ...]  # e.g. why a prior found no usable face


@dataclass(frozen=True)
class EvalResult:
    manifest: dict
    photos: tuple[PhotoResult, ...]
    not_run: dict[str, str]  # method or metric -> why it is missing


def adapted_label(network: str, prior: str, steps: int) -> str:
    suffix = " (upper bound)" if prior == "oracle" else ""
    return f"{network} adapted n={steps}, {prior} prior{suffix}"


def load_networks(config: EvalConfig) -> list[Network]:
    networks = []
    for source in (config.base_network, *config.checkpoints):
        loaded = load_supported_network(source, device=config.device)
        engine = make_engine("torch", loaded, device=config.device, precision="fp32", tile=config.tile)
        own_steps = resolve_settings({}, loaded).steps
        steps = config.steps or tuple(sorted({*DEFAULT_STEPS, own_steps}))
        label = "x4plus" if source == BASE_NETWORK else Path(source).stem
        if any(n.label == label for n in networks):  # two files of one name: keep rows apart
            label = f"{label}#{len(networks)}"
        base = build_pipeline(loaded, engine=engine, device=config.device, precision="fp32", adapt_enabled=False,
                              tile=config.tile, overlap=config.overlap)
        networks.append(Network(label, loaded, engine, base, steps))
    return networks


def load_priors(config: EvalConfig) -> tuple[dict[str, Callable[[np.ndarray], FacePrior]], dict[str, str]]:
    """Prior factories (photo's GT -> prior) and the priors that cannot run, with why."""
    factories: dict[str, Callable[[np.ndarray], FacePrior]] = {}
    missing: dict[str, str] = {}
    if "oracle" in config.priors:
        factories["oracle"] = OraclePrior
    if "gpen" in config.priors:
        try:
            gpen = RememberingPrior(make_prior("gpen", device=config.device))
            factories["gpen"] = lambda _gt: gpen
        except WeightsError as error:
            if config.require_priors:
                raise
            missing["adapted, gpen prior"] = f"GPEN weights unavailable: {error}"
    return factories, missing


class RememberingPrior:
    """A prior that returns its last output again for the same faces: every network of a
    photo sees the same aligned faces, and restoring them once is enough."""

    def __init__(self, prior: FacePrior) -> None:
        self.prior = prior
        self.name = prior.name
        self._last: tuple[np.ndarray, np.ndarray] | None = None

    def restore(self, aligned_faces: np.ndarray, affines_x4: np.ndarray) -> np.ndarray:
        if self._last is None or not np.array_equal(self._last[0], aligned_faces):
            self._last = (aligned_faces.copy(), self.prior.restore(aligned_faces, affines_x4))
        return self._last[1]


def _quantise(rgb: np.ndarray) -> np.ndarray:
    return (np.round(np.clip(rgb, 0, 1) * 255) / 255).astype(np.float32)


def run_network(network: Network, lq: np.ndarray, prior: FacePrior, detector: Detector,
                config: EvalConfig) -> tuple[dict[int, np.ndarray], str]:
    """The outputs after each of ``network.steps`` from the f2n-adapt-and-run pipeline, and why
    the photo was not adapted ('' if it was: then every output is the base network's)."""
    pipeline = build_pipeline(network.loaded, engine=network.engine, device=config.device, precision="fp32",
                              requested={"steps": max(network.steps)}, prior=prior, detector=detector,
                              tile=config.tile, overlap=config.overlap, seed=config.seed)
    outputs, result = pipeline.enhance_snapshots(lq, network.steps)
    return {steps: _quantise(rgb) for steps, rgb in outputs.items()}, result.reason


def evaluate_set(set_dir: Path, config: EvalConfig = EvalConfig(), *,
                 log: Callable[[str], None] = lambda _m: None) -> EvalResult:
    """Every method on every pair of the set at ``set_dir``, measured against its GT."""
    from f2n.runtime import RetinaFaceDetector

    manifest, pairs = load_test_set(set_dir)
    scale = int(manifest["scale"])
    networks = load_networks(config)
    prior_factories, not_run = load_priors(config)
    lpips_fn, lpips_problem = load_lpips() if config.lpips else (None, "not requested")
    not_run.update(unavailable_metrics(lpips_problem))
    niqe_missing = niqe_problem()
    if niqe_missing is not None:
        not_run["niqe"] = f"skipped: {niqe_missing}"
    detector = RetinaFaceDetector()
    photos = []
    for pair in pairs:
        lq, gt = read_image(pair.lq).rgb, read_image(pair.gt).rgb
        detections = detector(lq)  # once per photo: every pipeline below reuses it

        def detected(_image: np.ndarray) -> Detections:
            return detections

        # The face region of the metrics: the faces the face stage adapts to.
        boxes = tuple(face.box for face in select_faces(detections, lq.shape[:2], FaceStageConfig()) if face.used)
        outputs = {"bicubic": _quantise(cv2.resize(lq, (gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_CUBIC))}
        notes, most_adapted = [], []
        priors = {name: factory(gt) for name, factory in prior_factories.items()}
        for network in networks:
            log(f"{pair.name}: {network.label} base")
            outputs[f"{network.label} base"] = _quantise(network.base.enhance(lq).rgb)
            for prior_name, prior in priors.items():
                log(f"{pair.name}: {network.label} {prior_name} n={','.join(map(str, network.steps))}")
                snapshots, reason = run_network(network, lq, prior, detected, config)
                if reason:
                    notes.append(f"{network.label}, {prior_name} prior: base output used, not adapted ({reason})")
                for steps, output in snapshots.items():
                    outputs[adapted_label(network.label, prior_name, steps)] = output
                most_adapted.append(adapted_label(network.label, prior_name, max(network.steps)))
        faces = face_box_mask(gt.shape[:2], boxes, scale=scale)
        metrics = metrics_table(outputs, gt, faces, crop=scale, with_niqe=niqe_missing is None, lpips=lpips_fn)
        photos.append(PhotoResult(pair.name, metrics, outputs, lq, gt, boxes, tuple(most_adapted), tuple(notes)))
    return EvalResult(manifest, tuple(photos), not_run)
