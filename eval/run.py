"""Run every method on a test set and measure it.

Methods, per photo: bicubic; each network unadapted ("base"); each network adapted to the
photo's faces with each face prior, snapshotted after n steps for every n asked for. The
networks are Real-ESRGAN x4plus and any checkpoint given; the priors are the oracle (faces
cut from the ground truth: an upper bound for any prior) and GPEN when its weights are
installed. One detection per photo, one face stage per (photo, prior) and one inner loop per
(photo, prior, network) serve all n: θ is snapshotted on the way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from torch import nn

from f2n.errors import ConfigError, WeightsError
from f2n.eval.metrics import (
    face_mask,
    load_lpips,
    metrics_table,
    niqe_problem,
    unavailable_metrics,
)
from f2n.eval.testset import load_test_set
from f2n.runtime.adapt import AdaptConfig, Weights, iter_adaptation
from f2n.runtime.face_prior import FacePrior, OraclePrior, make_prior
from f2n.runtime.face_stage import FaceStageConfig, patch_weights, run_face_stage
from f2n.runtime.images import read_image
from f2n.runtime.tiling import DEFAULT_OVERLAP, DEFAULT_TILE, tiled_upscale
from f2n.runtime.torch_engine import TorchEngine
from f2n.runtime.types import PatchBatch

BASE_NETWORK = "realesrgan-x4plus"
PRIORS = ("oracle", "gpen")


@dataclass(frozen=True)
class EvalConfig:
    steps: tuple[int, ...] = (1, 10, 20)
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
        if not self.steps or min(self.steps) < 1:
            raise ConfigError(f"adaptation steps are {self.steps}, expected one or more integers >= 1")
        unknown = set(self.priors) - set(PRIORS)
        if unknown or not self.priors:
            raise ConfigError(f"priors are {self.priors}, expected some of {PRIORS}")


@dataclass(frozen=True)
class Network:
    label: str
    model: nn.Module
    adapt: AdaptConfig
    masknet: nn.Module | None


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
    from f2n.runtime.cli import load_masknet
    from f2n.weights import load_sr_network

    networks = []
    for source in (config.base_network, *config.checkpoints):
        loaded = load_sr_network(source, device=config.device)
        adapt = AdaptConfig(steps=max(config.steps), device=config.device)
        defaults = loaded.adaptation_defaults
        if defaults is not None:  # a meta-trained checkpoint adapts as it was trained to
            adapt = replace(adapt, lr=defaults.alpha, optimizer=defaults.optimizer, params="all")
        label = "x4plus" if source == BASE_NETWORK else Path(source).stem
        if any(n.label == label for n in networks):  # two files of one name: keep rows apart
            label = f"{label}#{len(networks)}"
        networks.append(Network(label, loaded.model, adapt, load_masknet(loaded.masknet_state, config.device, loaded.masknet_lq_resize)))
    return networks


def load_priors(config: EvalConfig) -> tuple[dict[str, Callable[[np.ndarray], FacePrior]], dict[str, str]]:
    """Prior factories (photo's GT -> prior) and the priors that cannot run, with why."""
    factories: dict[str, Callable[[np.ndarray], FacePrior]] = {}
    missing: dict[str, str] = {}
    if "oracle" in config.priors:
        factories["oracle"] = OraclePrior
    if "gpen" in config.priors:
        try:
            gpen = make_prior("gpen", device=config.device)
            factories["gpen"] = lambda _gt: gpen
        except WeightsError as error:
            if config.require_priors:
                raise
            missing["adapted, gpen prior"] = f"GPEN weights unavailable: {error}"
    return factories, missing


def _quantise(rgb: np.ndarray) -> np.ndarray:
    return (np.round(np.clip(rgb, 0, 1) * 255) / 255).astype(np.float32)


def _upscale(engine: TorchEngine, lq: np.ndarray, config: EvalConfig) -> np.ndarray:
    return _quantise(tiled_upscale(engine, lq, tile=config.tile, overlap=config.overlap))


def _snapshots(network: Network, patches: PatchBatch, steps: tuple[int, ...]) -> Iterator[tuple[int, Weights]]:
    """θ after each wanted step count, from one inner loop (live tensors: use before the next)."""
    wanted = set(steps)
    for step in iter_adaptation(network.model, patches, network.adapt):
        if step.index in wanted:
            yield step.index, step.weights


def evaluate_set(set_dir: Path, config: EvalConfig = EvalConfig(), *,
                 log: Callable[[str], None] = lambda _m: None) -> EvalResult:
    """Every method on every pair of the set at ``set_dir``, measured against its GT."""
    from f2n.runtime.face_detect import RetinaFaceDetector

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
    face_config = FaceStageConfig()
    engines = [TorchEngine(n.model, device=config.device) for n in networks]
    photos = []
    for pair in pairs:
        lq, gt = read_image(pair.lq).rgb, read_image(pair.gt).rgb
        detections = detector(lq)
        boxes = tuple(tuple(float(v) for v in box) for box, score in zip(detections.boxes, detections.scores)
                      if score >= face_config.score_threshold)
        outputs = {"bicubic": _quantise(cv2.resize(lq, (gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_CUBIC))}
        notes, most_adapted = [], []
        # 2. face pairs, once per prior (detection reused): each network only re-weighs them
        stages = {name: run_face_stage(lq, detector=lambda _image: detections, prior=factory(gt), config=face_config,
                                       seed=config.seed)
                  for name, factory in prior_factories.items()}
        for network, engine in zip(networks, engines):
            # 1. the network as it is
            engine.set_weights({k: p.detach() for k, p in network.model.named_parameters()})
            log(f"{pair.name}: {network.label} base")
            outputs[f"{network.label} base"] = _upscale(engine, lq, config)
            for prior_name, stage in stages.items():
                # 3. one inner loop, an SR pass per snapshot
                if stage.patches is None:
                    # As f2n-adapt-and-run does: no usable face, the base network's output.
                    notes.append(f"{network.label}, {prior_name} prior: base output used, not adapted "
                                 f"({stage.no_faces_reason})")
                    for steps in config.steps:
                        outputs[adapted_label(network.label, prior_name, steps)] = outputs[f"{network.label} base"]
                else:
                    unweighted = stage.patches  # without a MaskNet: weight 1 on the face, 0 on padding
                    patches = PatchBatch(unweighted.lq, unweighted.target,
                                         patch_weights(unweighted.lq, unweighted.target, unweighted.weight, network.masknet))
                    for steps, weights in _snapshots(network, patches, config.steps):
                        log(f"{pair.name}: {network.label} {prior_name} n={steps}")
                        engine.set_weights(weights)
                        outputs[adapted_label(network.label, prior_name, steps)] = _upscale(engine, lq, config)
                most_adapted.append(adapted_label(network.label, prior_name, max(config.steps)))
        faces = face_mask(gt.shape[:2], boxes, scale=scale)
        metrics = metrics_table(outputs, gt, faces, crop=scale, with_niqe=niqe_missing is None, lpips=lpips_fn)
        photos.append(PhotoResult(pair.name, metrics, outputs, lq, gt, boxes, tuple(most_adapted), tuple(notes)))
    return EvalResult(manifest, tuple(photos), not_run)
