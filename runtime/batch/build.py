"""The pipeline a batch worker builds once: the same components, in the same way, as
f2n-adapt-and-run builds them, from a small frozen set of options that travels to each
worker (the options are sent, never the built pipeline: each worker loads its own).

``build_pipeline`` is the one place f2n-batch makes a pipeline; it is meant to switch to
the shared pipeline factory (issue 18) once that exists.
"""

import hashlib
import json
from dataclasses import asdict, dataclass

import torch

from f2n.errors import ConfigError
from f2n.runtime import cli
from f2n.runtime.adapt import DEFAULT_LR, DEFAULT_OPTIMIZER, DEFAULT_STEPS, AdaptConfig
from f2n.runtime.face_prior import parse_prior_options
from f2n.runtime.face_stage import FaceStageConfig
from f2n.runtime.methods import AdaptationMethod, FaceAdaptation
from f2n.runtime.pipeline import AdaptAndRun, PipelineConfig
from f2n.runtime.support import SupportConfig
from f2n.runtime.tiling import DEFAULT_OVERLAP, DEFAULT_TILE
from f2n.weights import load_sr_network


@dataclass(frozen=True)
class PipelineOptions:
    """f2n-adapt-and-run's pipeline options, with its defaults (None: the checkpoint's or the device's)."""

    checkpoint: str = "realesrgan-x4plus"
    engine: str = "torch"
    device: str | None = None
    precision: str | None = None
    steps: int | None = None
    lr: float | None = None
    optimizer: str | None = None
    adapt_method: str = "auto"
    prior: str = "gpen"
    prior_options: tuple[str, ...] = ()  # NAME=VALUE, as --prior-option
    patches_per_face: int | None = None  # None: the checkpoint's, else PatchConfig's
    patches_per_image: int | None = None
    support_patch: int = SupportConfig().patch
    support_count: int = SupportConfig().count
    tile: int = DEFAULT_TILE
    tile_overlap: int = DEFAULT_OVERLAP
    paste_faces: bool = False
    no_adapt: bool = False
    require_adaptation: bool = False

    def __post_init__(self) -> None:
        if self.no_adapt and self.require_adaptation:
            raise ConfigError("--no-adapt and --require-adaptation contradict each other: give at most one")
        if not self.no_adapt and self.steps is not None and self.steps < 1:
            raise ConfigError(f"adaptation steps must be >= 1, got {self.steps} (or --no-adapt)")
        if self.prior.startswith("oracle:") and not self.no_adapt:
            raise ConfigError("--prior oracle:GT_PATH is for one photo (f2n-adapt-and-run), not a batch")
        # the option checks that need no weights, before any worker starts
        parse_prior_options(self.prior_options)
        cli.patch_config(self.patches_per_face, self.patches_per_image, None)
        SupportConfig(patch=self.support_patch, count=self.support_count)
        PipelineConfig(tile=self.tile, overlap=self.tile_overlap)

    def digest(self) -> str:
        """A short fingerprint: a manifest's finished photos count only for the same options."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def build_pipeline(options: PipelineOptions) -> AdaptAndRun:
    """Weights, engine, adaptation method and prior, as f2n-adapt-and-run builds them."""
    device = options.device or ("cuda" if torch.cuda.is_available() else "cpu")
    precision = options.precision or ("fp16" if device == "cuda" else "fp32")
    loaded = load_sr_network(options.checkpoint, device="cpu")
    method_name = cli.resolve_method(options.adapt_method, loaded)
    defaults = loaded.adaptation_defaults
    adapt = AdaptConfig(
        steps=options.steps if options.steps is not None else (defaults.steps if defaults else DEFAULT_STEPS),
        lr=options.lr if options.lr is not None else (defaults.alpha if defaults else DEFAULT_LR),
        optimizer=options.optimizer or (defaults.optimizer if defaults else DEFAULT_OPTIMIZER),
        device=device,
        precision="bf16" if device == "cuda" and precision != "fp32" else "fp32",
    )
    config = PipelineConfig(adapt=adapt, tile=options.tile, overlap=options.tile_overlap,
                            adapt_enabled=not options.no_adapt, require_adaptation=options.require_adaptation,
                            paste_faces=options.paste_faces, progress=False)
    engine = cli.make_engine(options.engine, loaded, device=device, precision=precision, tile=options.tile)
    method: AdaptationMethod
    if method_name == "cmdsr":
        from f2n.runtime.cmdsr import CmdsrAdaptation

        support = SupportConfig(patch=options.support_patch, count=options.support_count)
        method = CmdsrAdaptation(loaded.condition_net.to(device), support)
    else:
        prior, problem = (None, "") if options.no_adapt else cli.load_prior(
            options.prior, device, None, options.require_adaptation, parse_prior_options(options.prior_options))
        patches = cli.patch_config(options.patches_per_face, options.patches_per_image, loaded.patch_defaults)
        masknet = cli.load_masknet(loaded.masknet_state, device, loaded.masknet_lq_resize)
        method = FaceAdaptation(cli.make_detector(), prior, masknet=masknet, face=FaceStageConfig(patches=patches),
                                prior_problem=problem)
    return AdaptAndRun(model=loaded.model.to(device), engine=engine, method=method, config=config)
