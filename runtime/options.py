"""The pipeline's options, declared once.

:class:`PipelineOptions` is what f2n-adapt-and-run, f2n-batch (sent to every worker), an app
or a node pack give the pipeline factory (:func:`f2n.runtime.build.pipeline_from_options`):
plain keyword values with f2n-adapt-and-run's defaults (None: the checkpoint's or the device's).
Each field carries its command-line flag in its metadata (:func:`flag`), and :func:`click_options`
turns the fields into both commands' options, so a new option is one field here. A field whose
metadata names an adaptation ``setting`` reaches the inner loop's settings with no other change
(:meth:`PipelineOptions.requested`). Choices come from the registries that own them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar, get_args

import click

from f2n.errors import ConfigError
from f2n.export.engines import DEVICES, ENGINES
from f2n.export.torch_engine import PRECISIONS
from f2n.nets.rrdbnet import VALUE_RANGES, ValueRange
from f2n.runtime.adapt import (
    DEFAULT_LR,
    DEFAULT_OBJECTIVE,
    DEFAULT_OPTIMIZER,
    DEFAULT_STEPS,
    DEFAULT_STRENGTH,
    DEFAULT_TEXTURE_CEILING,
    DEFAULT_TEXTURE_FLOOR,
    OBJECTIVES,
    AdaptConfig,
    Optimizer,
)
from f2n.runtime.build import DEFAULT_PATCHES_PER_IMAGE, build_pipeline, patch_config
from f2n.runtime.engine_choice import AUTO
from f2n.runtime.face.prior import ORACLE_PREFIXES, parse_prior_options
from f2n.runtime.methods import METHODS
from f2n.runtime.pipeline import AdaptAndRun, PipelineConfig, check_adapt_steps
from f2n.runtime.face.prior_conventions import PRIOR_NAMES
from f2n.runtime.redegnet import ReDegNetConfig
from f2n.runtime.support import SupportConfig
from f2n.weights import LoadedSR


def flag(help: str, *, setting: str | None = None, to_setting: Callable[[Any], Any] | None = None,
         **click_kwargs: Any) -> dict[str, Any]:
    """A field's metadata: its ``--flag`` (the field's name with dashes unless ``param_decls``
    is given) and click's keywords; ``setting``: the adaptation setting it requests (its value,
    or ``to_setting(value)``; None means "not given")."""
    return {"cli": {"help": help, **click_kwargs}, "setting": setting, "to_setting": to_setting}


def _guard(no_guard: bool) -> bool | None:
    return False if no_guard else None


@dataclass(frozen=True)
class PipelineOptions:
    """Every option of the per-photo pipeline; checked on construction (one ConfigError line)."""

    checkpoint: str = field(default="realesrgan-x4plus", metadata=flag("Registry name or weight file.", show_default=True))
    sr_range: ValueRange | None = field(default=None, metadata=flag(
        "The value range the SR weights were trained on [the file's record, else the registry's; a file named "
        "F2NESRGAN.pth: signed; else unit].", type=click.Choice(VALUE_RANGES)))
    engine: str = field(default=AUTO, metadata=flag(
        "auto: the fastest safe engine here (on the CPU measured once per machine: ncnn, OpenVINO or torch; "
        "TensorRT or compiled torch on CUDA; "
        "docs/benchmarks.md); the report names the choice.", type=click.Choice((AUTO, *ENGINES)), show_default=True))
    device: str | None = field(default=None, metadata=flag("[cuda if available, else cpu]",
                                                           type=click.Choice(DEVICES)))
    precision: str | None = field(default=None, metadata=flag(
        "Engine precision [auto: the engine rule's; else fp16 on cuda, fp32 on cpu].",
        type=click.Choice(tuple(PRECISIONS))))
    steps: int | None = field(default=None, metadata=flag(
        f"Adaptation steps n [checkpoint's, else {DEFAULT_STEPS}].", type=int, setting="steps"))
    lr: float | None = field(default=None, metadata=flag(
        f"Adaptation learning rate α [checkpoint's, else {DEFAULT_LR}].", type=float, setting="lr"))
    optimizer: str | None = field(default=None, metadata=flag(
        f"[checkpoint's, else {DEFAULT_OPTIMIZER}]", type=click.Choice(get_args(Optimizer)), setting="optimizer"))
    no_guard: bool = field(default=False, metadata=flag(
        "Keep θ′ even when the held-out face pairs' loss did not improve (by default the base weights are used "
        "then, and the report says so).", is_flag=True, setting="guard", to_setting=_guard))
    objective: str | None = field(default=None, metadata=flag(
        "Inner-loop loss: l1 (MetaF2N), lowband (L1 on the low band only), teacher (L1 + the base network as "
        "teacher of the non-face texture), lowband+teacher, lowband+swd (low band + a sliced Wasserstein texture "
        "term on high-band patch sets); with their weights (f2n-models fetch): lowband+critic (+ 0.1 × the released "
        "Real-ESRGAN x4plus discriminator as a texture critic), lowband+perceptual (+ VGG-19 perceptual loss toward "
        f"the restored faces), lowband+perceptual+critic [{DEFAULT_OBJECTIVE}].",
        type=click.Choice(tuple(OBJECTIVES)), setting="objective"))
    strength: float | None = field(default=None, metadata=flag(
        f"θ + strength·(θ′ − θ) goes to the engine: 0 is the base network, 1 the adapted one [{DEFAULT_STRENGTH:g}].",
        type=click.FloatRange(0, 1), setting="strength"))
    texture_floor: float | None = field(default=None, metadata=flag(
        "Whole-photo guard: keep the base network when the non-face high-band energy of f(θ′) over f(θ) falls "
        f"below this (texture lost); 0 is off [{DEFAULT_TEXTURE_FLOOR:g}].",
        type=click.FloatRange(0, 1, max_open=True), setting="texture_floor"))
    texture_ceiling: float | None = field(default=None, metadata=flag(
        "Whole-photo guard: keep the base network when that ratio rises above this (noise turned into texture; "
        f"1.25 in docs/adaptation.md's study); 0 is off [{DEFAULT_TEXTURE_CEILING:g}].",
        type=float, setting="texture_ceiling"))
    adapt_method: str = field(default="auto", metadata=flag(
        "faces: MetaF2N; cmdsr: ConditionNet on the photo's LR patches; redegnet: the faces' degradation rendered "
        "onto --natural-bank images (ReDegNet); auto: cmdsr when the checkpoint has a ConditionNet.",
        type=click.Choice(METHODS), show_default=True))
    natural_bank: str | None = field(default=None, metadata=flag(
        "ReDegNet: a folder of HQ natural images.", type=click.Path(file_okay=False)))
    natural_pairs: int = field(default=ReDegNetConfig().natural_pairs, metadata=flag(
        "ReDegNet: synthetic natural pairs per photo.", type=int, show_default=True))
    redegnet_weights: str | None = field(default=None, metadata=flag(
        "ReDegNet: a folder with its networks, the released net_*_init.pth files or an f2n-train run "
        "[the weight cache: f2n-models add].", type=click.Path(exists=True, file_okay=False)))
    prior: str = field(default="gpen", metadata=flag(
        f"{' | '.join(PRIOR_NAMES)} | a .pth/.safetensors/.onnx face restorer | module:callable | "
        f"{' | '.join(prefix + 'GT_PATH' for prefix in ORACLE_PREFIXES)} (one photo). "
        "GPEN and CodeFormer weights: non-commercial use only.", show_default=True))
    prior_options: tuple[str, ...] = field(default=(), metadata=flag(
        "A prior's option, repeatable: w=0.7 sets CodeFormer's fidelity (default 0.5).",
        param_decls=("--prior-option", "prior_options"), multiple=True, metavar="NAME=VALUE"))
    patches_per_face: int | None = field(default=None, metadata=flag(
        "Face patch pairs per face, instead of a budget per photo [checkpoint's].", type=int,
        setting="patches_per_face"))
    patches_per_image: int | None = field(default=None, metadata=flag(
        "Face patch pairs per photo, spread over its faces by area (instead of --patches-per-face) "
        f"[checkpoint's, else {DEFAULT_PATCHES_PER_IMAGE}].", type=int, setting="patches_per_image"))
    support_patch: int = field(default=SupportConfig().patch, metadata=flag(
        "CMDSR support patch side, LR pixels.", type=int, show_default=True))
    support_count: int = field(default=SupportConfig().count, metadata=flag(
        "CMDSR support patches per photo.", type=int, show_default=True))
    tile: int = field(default=PipelineConfig().tile, metadata=flag("Tile size, LR pixels.", type=int,
                                                                    show_default=True))
    tile_overlap: int = field(default=PipelineConfig().overlap, metadata=flag("LR pixels.", type=int,
                                                                               show_default=True))
    paste_faces: bool = field(default=False, metadata=flag("Blend the restored faces over the result.", is_flag=True))
    no_adapt: bool = field(default=False, metadata=flag("Run the base network only.", is_flag=True))
    require_adaptation: bool = field(default=False, metadata=flag("Fail a photo that cannot be adapted.",
                                                                  is_flag=True))

    def __post_init__(self) -> None:
        # every check that needs no weights, before any photo is read or any worker starts
        if self.no_adapt and self.require_adaptation:
            raise ConfigError("--no-adapt and --require-adaptation contradict each other: give at most one")
        if not self.no_adapt and self.steps is not None:
            check_adapt_steps(self.steps)
        parse_prior_options(self.prior_options)
        patch_config(self.patches_per_face, self.patches_per_image, None)
        if self.sr_range is not None and self.sr_range not in VALUE_RANGES:
            raise ConfigError(f"--sr-range must be one of {', '.join(VALUE_RANGES)}, got {self.sr_range!r}")
        for name, allowed in (("engine", (AUTO, *ENGINES)), ("adapt_method", METHODS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"--{name.replace('_', '-')} must be one of {', '.join(allowed)}, "
                                  f"got {getattr(self, name)!r}")
        if self.adapt_method == "redegnet" and not self.no_adapt:
            ReDegNetConfig(self.natural_pairs)
        SupportConfig(patch=self.support_patch, count=self.support_count)
        PipelineConfig(tile=self.tile, overlap=self.tile_overlap)
        AdaptConfig(texture_floor=self.texture_floor or 0.0, texture_ceiling=self.texture_ceiling or 0.0)

    @property
    def oracle(self) -> bool:
        """Whether the faces' targets are cut out of one photo's ground truth (``oracle:``,
        ``oracle-restored:``): a run of exactly one photo."""
        return self.prior.startswith(ORACLE_PREFIXES) and not self.no_adapt and self.adapt_method != "cmdsr"

    def requested(self) -> dict[str, Any]:
        """The adaptation settings these options request (None: the checkpoint's, else f2n's)."""
        settings = {}
        for item in fields(self):
            name = item.metadata.get("setting")
            if name is not None:
                convert = item.metadata.get("to_setting") or (lambda value: value)
                settings[name] = convert(getattr(self, item.name))
        return settings

    def digest(self) -> str:
        """A short fingerprint: a manifest's finished photos count only for the same options."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def take(cls, values: dict[str, Any]) -> PipelineOptions:
        """The options among a command's parsed ``values`` (removed from it), the rest left there."""
        return cls(**{name: values.pop(name) for name in OPTION_NAMES if name in values})


OPTION_NAMES = tuple(item.name for item in fields(PipelineOptions))
Command = TypeVar("Command", bound=Callable[..., Any])


def click_options(overrides: Mapping[str, Mapping[str, Any]] | None = None) -> Callable[[Command], Command]:
    """A decorator adding every :class:`PipelineOptions` field as a click option, in field order;
    ``overrides``: click keywords per field name (a command's own help text)."""
    overrides = overrides or {}

    def decorate(command: Command) -> Command:
        for item in reversed(fields(PipelineOptions)):
            command = _option(item, overrides.get(item.name, {}))(command)
        return command

    return decorate


def _option(item: Field, override: Mapping[str, Any]) -> Callable[[Command], Command]:
    kwargs = {**item.metadata["cli"], **override}
    declarations = kwargs.pop("param_decls", ("--" + item.name.replace("_", "-"),))
    default = item.default if item.default is not MISSING else item.default_factory()  # type: ignore[misc]
    return click.option(*declarations, default=default, **kwargs)


def pipeline_from_options(options: PipelineOptions, *, network: LoadedSR | None = None,
                          oracle_shape: tuple[int, int] | None = None,
                          warn: Callable[[str], None] = lambda _message: None, progress: bool = False,
                          threads: int = 0) -> AdaptAndRun:
    """The pipeline of ``options``, through the one factory (:func:`f2n.runtime.build.build_pipeline`).
    ``network``: ``options.checkpoint`` already loaded (with ``options.sr_range``); ``oracle_shape``:
    the (H, W) of the one photo an oracle prior's ground truth is x4 of; ``warn``: told once when
    the prior cannot load; ``progress``: a progress bar over tiles; ``threads``: the engine's CPU
    threads (0: its library's default; a batch worker gives its share of the node)."""
    return build_pipeline(
        network or options.checkpoint, sr_range=options.sr_range, engine=options.engine, device=options.device,
        precision=options.precision, requested=options.requested(), method=options.adapt_method,
        prior=options.prior, prior_options=parse_prior_options(options.prior_options), oracle_shape=oracle_shape,
        support=SupportConfig(patch=options.support_patch, count=options.support_count),
        natural_bank=_path(options.natural_bank), natural_pairs=options.natural_pairs,
        redegnet_weights=_path(options.redegnet_weights), threads=threads, warn=warn,
        tile=options.tile, overlap=options.tile_overlap, adapt_enabled=not options.no_adapt,
        require_adaptation=options.require_adaptation, paste_faces=options.paste_faces, progress=progress)


def _path(value: str | None) -> Path | None:
    return Path(value) if value is not None else None
