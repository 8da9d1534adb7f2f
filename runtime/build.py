"""Build the adapt-and-run pipeline from a checkpoint: the one place where a command's
options meet a checkpoint's settings. f2n-adapt-and-run, its ``--demo``, f2n-batch's workers,
f2n-eval, f2n-bench and the measurement scripts all assemble their pipeline here, so each
gets the same engine rule (``--engine auto``) and the same adaptation methods.

Every adaptation setting is resolved the same way, field by field: the value the user
gave, else the checkpoint's (its ``alpha``/``steps``/``optimizer`` meta; a meta-trained θ
adapts all its parameters), else f2n's default. The patch budget is one setting given per face or per image (a checkpoint's
``patches_per_face``/``patches_per_image``, ``patch_lq_size``); the MaskNet upsamples its LQ
input as the checkpoint says (``masknet_lq_resize``). A new inner-loop setting is one field of
:class:`AdaptationSettings` and one line of :func:`checkpoint_settings`. The SR network's value
range is the user's ``--sr-range``, else what the file or registry says
(:func:`f2n.weights.sr.resolve_value_range`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from f2n.errors import ConfigError, WeightsError
from f2n.export.engines import make_engine
from f2n.export.protocol import SREngine
from f2n.nets.masknet import MaskNet
from f2n.nets.rrdbnet import ValueRange
from f2n.runtime.adapt import (
    DEFAULT_HOLDOUT,
    DEFAULT_LR,
    DEFAULT_OBJECTIVE,
    DEFAULT_OPTIMIZER,
    DEFAULT_PARAMS,
    DEFAULT_STEPS,
    DEFAULT_STRENGTH,
    DEFAULT_TEXTURE_CEILING,
    DEFAULT_TEXTURE_FLOOR,
    AdaptConfig,
    objective_settings,
)
from f2n.runtime.engine_choice import Measure, Measurement, resolve_engine
from f2n.runtime.face.patches import PatchConfig
from f2n.runtime.face.prior import FacePrior
from f2n.runtime.face.stage import Detector, FaceStageConfig
from f2n.runtime.loss_networks import load_loss_networks
from f2n.runtime.methods import METHODS, AdaptationMethod, FaceAdaptation
from f2n.runtime.pipeline import AdaptAndRun, PipelineConfig
from f2n.runtime.redegnet import NaturalBank, ReDegNetAdaptation, ReDegNetConfig, load_redegnets
from f2n.runtime.support import SupportConfig
from f2n.runtime.types import SCALE
from f2n.weights import AdaptationDefaults, LoadedSR, load_sr_network
from f2n.weights.checkpoint import PatchDefaults
from f2n.weights.masknet import load_masknet

DEFAULT_PATCHES_PER_IMAGE = 8


@dataclass(frozen=True)
class AdaptationSettings:
    """How each photo is adapted, resolved (see the module docstring)."""

    steps: int = DEFAULT_STEPS
    lr: float = DEFAULT_LR
    optimizer: str = DEFAULT_OPTIMIZER
    params: str = DEFAULT_PARAMS  # which parameters adapt (f2n.runtime.adapt_params)
    guard: bool = True  # keep θ when the held-out face pairs' loss did not improve
    holdout: float = DEFAULT_HOLDOUT  # share of the pairs held out for early stopping and the guard
    objective: str = DEFAULT_OBJECTIVE  # the inner loop's loss (f2n.runtime.adapt.OBJECTIVES)
    strength: float = DEFAULT_STRENGTH  # θ + strength·(θ′ − θ) goes to the engine
    texture_floor: float = DEFAULT_TEXTURE_FLOOR  # the whole-photo guard (AdaptConfig.texture_floor)
    texture_ceiling: float = DEFAULT_TEXTURE_CEILING  # its upper bound (AdaptConfig.texture_ceiling)
    # A budget per photo, spread over its faces: a step costs the same for 1 or 10 faces (issue 16);
    # 8 pairs (6 trained, 2 held out) is what the adaptation study ran (docs/adaptation.md).
    patches: PatchConfig = field(default_factory=lambda: PatchConfig(per_image=DEFAULT_PATCHES_PER_IMAGE))


REQUESTABLE = ("steps", "lr", "optimizer", "guard", "holdout", "objective", "strength", "texture_floor", "texture_ceiling",
               "patches_per_face", "patches_per_image")


def checkpoint_settings(defaults: AdaptationDefaults | None) -> dict[str, Any]:
    """A checkpoint's inner-loop settings under :class:`AdaptationSettings`' field names."""
    if defaults is None:
        return {}
    # A meta-trained θ adapts as it was trained to, as the paper's test.py runs it: every
    # parameter, on every pair (no held-out share, so no guard: its step is the trained one).
    return {"steps": defaults.steps, "lr": defaults.alpha, "optimizer": defaults.optimizer, "params": "all",
            "holdout": 0.0, "guard": False}


def resolve_settings(requested: Mapping[str, Any], loaded: LoadedSR,
                     default: AdaptationSettings = AdaptationSettings()) -> AdaptationSettings:
    """Per setting: ``requested`` (None or absent: not given), else ``loaded``'s checkpoint, else
    ``default``. The patch count is one setting given either per face or per image."""
    unknown = set(requested) - set(REQUESTABLE)
    if unknown:
        raise ConfigError(f"unknown adaptation settings {sorted(unknown)}, expected some of {REQUESTABLE}")
    checkpoint = checkpoint_settings(loaded.adaptation_defaults)
    values = {}
    for name in ("steps", "lr", "optimizer", "params", "guard", "holdout", "objective", "strength", "texture_floor",
                 "texture_ceiling"):
        given = requested.get(name)
        values[name] = given if given is not None else checkpoint.get(name, getattr(default, name))
    patches = patch_config(requested.get("patches_per_face"), requested.get("patches_per_image"),
                           loaded.patch_defaults, default.patches)
    return AdaptationSettings(**values, patches=patches)


def patch_config(per_face: int | None, per_image: int | None, defaults: PatchDefaults | None,
                 fallback: PatchConfig = PatchConfig()) -> PatchConfig:
    """Face patch pairs: the options (one of the two), else the checkpoint's, else ``fallback``'s."""
    if per_face is not None and per_image is not None:
        raise ConfigError(f"--patches-per-face {per_face} and --patches-per-image {per_image} exclude each other: "
                          "give one")
    if per_face is None and per_image is None:
        if defaults is not None and (defaults.per_face is not None or defaults.per_image is not None):
            per_face, per_image = defaults.per_face, defaults.per_image
        else:
            per_face, per_image = fallback.count, fallback.per_image
    lq_size = defaults.lq_size if defaults is not None and defaults.lq_size is not None else fallback.lq_size
    return PatchConfig(lq_size=lq_size, count=per_face if per_face is not None else fallback.count,
                       per_image=per_image)


def resolve_device(device: str | None) -> str:
    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def load_supported_network(source: str | Path | LoadedSR, device: str = "cpu",
                           value_range: ValueRange | None = None) -> LoadedSR:
    """An SR network f2n can adapt: registry name, weight file or an already loaded one.
    ``value_range`` (``--sr-range``) overrides the file's; an already loaded network has its
    range. A network of another scale is refused here, in one line, before any photo is read."""
    if isinstance(source, LoadedSR):
        if value_range is not None and value_range != source.descriptor.value_range:
            raise ConfigError(f"{source.path} was loaded as {source.descriptor.value_range}; "
                              f"give the value range {value_range} when loading it")
        loaded = source
    else:
        loaded = load_sr_network(source, device=device, value_range=value_range)
    if loaded.descriptor.scale != SCALE:
        raise WeightsError(f"{loaded.path} is a x{loaded.descriptor.scale} network; f2n adapts and runs x{SCALE} "
                           f"networks only (the face stage, tiling and training pair each LQ pixel with "
                           f"{SCALE}x{SCALE} output pixels)")
    return loaded


def _engine_probe(loaded: LoadedSR, tile: int) -> Measure:
    """``auto``'s measurements on the CPU (:mod:`f2n.runtime.engine_probe`), or none where turned off."""
    from f2n.runtime import engine_probe

    def measure(candidates: tuple[tuple[str, str], ...]) -> list[Measurement]:
        if not engine_probe.probe_enabled():
            return []
        return engine_probe.cached_measurements(
            loaded.model, candidates,
            lambda name, precision: make_engine(name, loaded, device="cpu", precision=precision, tile=tile, threads=1))

    return measure


def resolve_method(requested: str, loaded: LoadedSR) -> str:
    """``faces``, ``cmdsr`` or ``redegnet``: the checkpoint decides under ``auto`` (a ConditionNet
    means CMDSR, else faces)."""
    if requested not in METHODS:
        raise ConfigError(f"adaptation method must be one of {', '.join(METHODS)}, got {requested!r}")
    if requested == "auto":
        return "cmdsr" if loaded.condition_net is not None else "faces"
    if requested == "cmdsr" and loaded.condition_net is None:
        raise ConfigError(f"--adapt-method cmdsr needs a checkpoint with ConditionNet weights, {loaded.path} has none "
                          "(train one with f2n-train --method cmdsr)")
    return requested


def checkpoint_masknet(state: Mapping[str, torch.Tensor] | None, device: str, lq_resize: str = "bicubic") -> MaskNet | None:
    """The checkpoint's MaskNet when it has one (``lq_resize``: how it upsamples its LQ input,
    the checkpoint's ``masknet_lq_resize``); without it every pixel weighs 1."""
    if state is None:
        return None
    return load_masknet(dict(state), "the checkpoint's masknet", lq_resize=lq_resize).to(device)


def load_prior(spec: str | FacePrior, *, device: str, lq_shape: tuple[int, int] | None = None,
               required: bool = False, options: Mapping[str, float] | None = None,
               sr: LoadedSR | None = None) -> tuple[FacePrior | None, str]:
    """The face prior (a spec for :func:`~f2n.runtime.face.prior.make_prior`, or one already
    made), or (None, why) when its weights cannot load and adaptation is optional. ``sr``: the
    run's SR network (on ``device``), which ``oracle-restored:`` restores its faces with."""
    from f2n.runtime.face.prior import make_prior  # looked up per call: GPEN's weights load lazily

    if not isinstance(spec, str):
        return spec, ""
    sr_provenance = {"sr_network": str(sr.path), "sr_range": sr.value_range.value_range} if sr is not None else None
    try:
        return make_prior(spec, device=device, lq_shape=lq_shape, options=options,
                          sr_model=sr.model if sr is not None else None, sr_provenance=sr_provenance), ""
    except WeightsError as error:
        if required:
            raise
        return None, f"face prior {spec!r} unavailable: {error}"


def build_pipeline(
    source: str | Path | LoadedSR = "realesrgan-x4plus",
    *,
    engine: str | SREngine = "torch",
    device: str | None = None,
    precision: str | None = None,
    requested: Mapping[str, Any] | None = None,
    defaults: AdaptationSettings = AdaptationSettings(),
    method: str = "auto",
    prior: str | FacePrior = "gpen",
    prior_options: Mapping[str, float] | None = None,
    oracle_shape: tuple[int, int] | None = None,
    detector: Detector | None = None,
    support: SupportConfig = SupportConfig(),
    natural_bank: Path | None = None,
    natural_pairs: int = ReDegNetConfig().natural_pairs,
    sr_range: ValueRange | None = None,
    redegnet_weights: Path | None = None,
    threads: int = 0,
    warn: Callable[[str], None] = lambda _message: None,
    **pipeline_options: Any,
) -> AdaptAndRun:
    """The pipeline for checkpoint ``source``.

    ``engine``: a name for :func:`make_engine` or ``auto`` (the rule of
    :mod:`f2n.runtime.engine_choice`; the pipeline's ``engine_choice`` says what it chose and why),
    or an engine already made (several pipelines sharing one, as the demo's do). ``requested``: adaptation settings the user gave
    (``steps``, ``lr``, ``optimizer``, ``patches_per_face`` or ``patches_per_image``; None: the
    checkpoint's, else ``defaults``'). ``prior``: a spec or a prior (``prior_options``: its
    ``--prior-option`` values); a prior whose weights are missing leaves the photos unadapted (``warn``
    says so once) unless ``require_adaptation``. ``oracle_shape``: the (H, W) of the one photo
    an ``oracle:`` ground truth must be x4 of. ``natural_bank``/``natural_pairs``: ReDegNet's
    folder of HQ natural images and synthetic pairs per photo; ``redegnet_weights``: a folder with its
    networks (the released files or a training run; None: the weight cache). ``sr_range``: the SR
    network's value range (``--sr-range``; None: what the file or registry says). ``threads``: the CPU
    threads the engine and the face detector may use (0: every core; f2n-batch gives each worker
    its share). ``pipeline_options``:
    :class:`PipelineConfig` fields. Checks run cheapest first: options, ReDegNet's bank and
    networks, the SR network, engine, the objective's loss networks (its critic and VGG-19, only
    when it has those terms; missing ones fail the build), then the prior (possibly a download).
    """
    device = resolve_device(device)
    redegnet = None
    if method == "redegnet" and pipeline_options.get("adapt_enabled", True):
        redegnet = (ReDegNetConfig(natural_pairs), NaturalBank(natural_bank), load_redegnets(device, redegnet_weights))
    loaded = load_supported_network(source, value_range=sr_range)
    settings = resolve_settings(requested or {}, loaded, defaults)
    adapt = AdaptConfig(steps=settings.steps, lr=settings.lr, optimizer=settings.optimizer, params=settings.params,
                        guard=settings.guard, holdout=settings.holdout, strength=settings.strength,
                        texture_floor=settings.texture_floor, texture_ceiling=settings.texture_ceiling,
                        **objective_settings(settings.objective), device=device,
                        precision="bf16" if device == "cuda" and precision != "fp32" else "fp32")
    config = PipelineConfig(adapt=adapt, **pipeline_options)
    face = FaceStageConfig(patches=settings.patches)
    method_name = resolve_method(method, loaded)
    choice = None
    if isinstance(engine, str):  # the engine before the prior: one that cannot run here fails before a download
        choice = resolve_engine(engine, device, precision, measure=_engine_probe(loaded, config.tile))
        engine = make_engine(choice.engine, loaded, device=device, precision=choice.precision, tile=config.tile,
                             batch_size=config.batch_size, threads=threads)
    loaded.model.to(device)  # in place: the pipeline's θ and the oracle-restored prior's network
    adaptation: AdaptationMethod
    loss_networks = None
    if config.adapt_enabled and method_name != "cmdsr" and adapt.wants_loss_networks:
        loss_networks = load_loss_networks(critic=adapt.critic > 0, perceptual=adapt.perceptual > 0, device=device)
    if method_name == "cmdsr":
        from f2n.runtime.cmdsr import CmdsrAdaptation

        adaptation = CmdsrAdaptation(loaded.condition_net.to(device), support)
    else:
        face_prior, problem = (None, "") if not config.adapt_enabled else load_prior(
            prior, device=device, lq_shape=oracle_shape, required=config.require_adaptation, options=prior_options,
            sr=loaded)
        if problem:
            warn(f"{problem}; running the base network")
        if config.adapt_enabled:  # --no-adapt looks for no faces: no detector to build
            detector = detector or default_detector(threads)
        if redegnet is not None:
            redegnet_config, bank, nets = redegnet
            adaptation = ReDegNetAdaptation(detector, face_prior, nets, bank, config=redegnet_config, face=face,
                                            prior_problem=problem, device=device, loss_networks=loss_networks)
        else:
            adaptation = FaceAdaptation(detector, face_prior, face=face, prior_problem=problem,
                                        masknet=checkpoint_masknet(loaded.masknet_state, device, loaded.masknet_lq_resize),
                                        loss_networks=loss_networks)
    return AdaptAndRun(model=loaded.model.to(device), engine=engine, method=adaptation, config=config,
                       engine_choice=choice, sr_range=loaded.value_range, engine_holds_base=choice is not None)


def default_detector(threads: int = 0) -> Detector:
    from f2n.runtime.face.detect import RetinaFaceDetector

    return RetinaFaceDetector(threads=threads)
