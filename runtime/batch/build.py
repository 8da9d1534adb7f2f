"""The pipeline a batch worker builds once, from a small frozen set of options that travels
to each worker (the options are sent, never the built pipeline: each worker loads its own).
It is built by the one factory, :func:`f2n.runtime.build.build_pipeline`, exactly as
f2n-adapt-and-run builds it: the same engine rule (``auto``), methods and checkpoint settings.
"""

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from f2n.errors import ConfigError
from f2n.nets.rrdbnet import VALUE_RANGES, ValueRange
from f2n.runtime import build
from f2n.runtime.face_prior import parse_prior_options
from f2n.runtime.pipeline import AdaptAndRun, PipelineConfig
from f2n.runtime.redegnet import ReDegNetConfig
from f2n.runtime.support import SupportConfig
from f2n.runtime.tiling import DEFAULT_OVERLAP, DEFAULT_TILE


@dataclass(frozen=True)
class PipelineOptions:
    """f2n-adapt-and-run's pipeline options, with its defaults (None: the checkpoint's or the device's)."""

    checkpoint: str = "realesrgan-x4plus"
    sr_range: ValueRange | None = None  # --sr-range (None: what the checkpoint or registry says)
    engine: str = "auto"
    device: str | None = None
    precision: str | None = None
    steps: int | None = None
    lr: float | None = None
    optimizer: str | None = None
    no_guard: bool = False
    objective: str | None = None  # the inner loop's loss (None: the default, f2n.runtime.adapt.OBJECTIVES)
    strength: float | None = None  # θ + strength·(θ′ − θ) (None: the default)
    adapt_method: str = "auto"
    natural_bank: str | None = None  # ReDegNet's folder of HQ natural images (absolute: workers read it)
    natural_pairs: int = ReDegNetConfig().natural_pairs
    redegnet_weights: str | None = None  # ReDegNet's networks: a folder (absolute); None: the weight cache
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
        build.patch_config(self.patches_per_face, self.patches_per_image, None)
        if self.sr_range is not None and self.sr_range not in VALUE_RANGES:
            raise ConfigError(f"--sr-range must be one of {', '.join(VALUE_RANGES)}, got {self.sr_range!r}")
        if self.adapt_method == "redegnet" and not self.no_adapt:
            ReDegNetConfig(self.natural_pairs)
        SupportConfig(patch=self.support_patch, count=self.support_count)
        PipelineConfig(tile=self.tile, overlap=self.tile_overlap)

    def digest(self) -> str:
        """A short fingerprint: a manifest's finished photos count only for the same options."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def build_pipeline(options: PipelineOptions) -> AdaptAndRun:
    """Weights, engine, adaptation method and prior, through f2n-adapt-and-run's factory."""
    requested = {"steps": options.steps, "lr": options.lr, "optimizer": options.optimizer,
                 "guard": False if options.no_guard else None,
                 "objective": options.objective, "strength": options.strength,
                 "patches_per_face": options.patches_per_face, "patches_per_image": options.patches_per_image}
    return build.build_pipeline(
        options.checkpoint, sr_range=options.sr_range, engine=options.engine, device=options.device,
        precision=options.precision,
        requested=requested, method=options.adapt_method, prior=options.prior,
        prior_options=parse_prior_options(options.prior_options),
        support=SupportConfig(patch=options.support_patch, count=options.support_count),
        natural_bank=Path(options.natural_bank) if options.natural_bank is not None else None,
        natural_pairs=options.natural_pairs,
        redegnet_weights=Path(options.redegnet_weights) if options.redegnet_weights is not None else None,
        tile=options.tile, overlap=options.tile_overlap,
        adapt_enabled=not options.no_adapt, require_adaptation=options.require_adaptation,
        paste_faces=options.paste_faces, progress=False)
