"""Training configuration: MetaF2N meta-training (Alg. 1) or CMDSR (``RunConfig.method``).
One frozen dataclass per concern; ``TrainConfig`` groups them and is what checkpoints
store (as JSON)."""

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from f2n.errors import ConfigError


@dataclass(frozen=True)
class NetConfig:
    """Sizes of θ (RRDBNet), θ_m (MaskNet) and D. Real-ESRGAN x4plus is 23/64/32 and D 64."""

    num_block: int = 23
    num_feat: int = 64
    num_grow_ch: int = 32
    mask_feat: int = 64
    mask_layers: int = 8
    disc_feat: int = 64


@dataclass(frozen=True)
class LossConfig:
    """Outer-loss weights: λ1·L1 + λ2·LPIPS + λ3·GAN + λ4·‖m − 1‖₂ (+ λ5·self-similarity + λ6·texture)."""

    l1: float = 1.0
    lpips: float = 0.5
    gan: float = 0.1
    mask_reg: float = 0.002
    self_similarity: float = 0.0  # optional extra term, off by default
    ss_patch: int = 3  # self-similarity: patch side (HQ pixels)
    ss_window: int = 5  # neighbourhood side, odd
    ss_h: float = 0.1  # bandwidth of exp(-‖p_i − p_j‖² / h)
    ss_threshold: float = 0.05  # |Laplacian| above this marks a detailed pixel
    texture: float = 0.0  # λ6: sliced Wasserstein distance of high-band patch sets (f2n.texture_loss), off by default
    texture_sigma: float = 2.0  # its high band: 1 − G_σ, σ in HQ pixels


@dataclass(frozen=True)
class OptimConfig:
    lr_sr: float = 3e-5
    lr_mask: float = 1e-4
    lr_disc: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.999)
    alpha: float = 1e-2  # inner-loop step size
    first_order: bool = False  # drop second-order terms (FOMAML); θ_m then learns only from ‖m − 1‖
    ema_decay: float = 0.0  # 0 disables the EMA of θ


@dataclass(frozen=True)
class DataConfig:
    """Patch sizes are HQ (output) pixels; LQ patches are a quarter of them."""

    faces_dir: Path | None = None
    natural_dir: Path | None = None
    tasks_per_step: int = 4
    inner_patch: int = 128
    outer_patch: int = 256
    face_size: int = 512  # aligned faces are resized to this before degradation
    ood: bool = False  # sample out-of-distribution degradations
    face_targets: str = "auto"  # "auto" (prior if its weights are present), "prior" or "gt"


@dataclass(frozen=True)
class CmdsrConfig:
    """CMDSR training (``--method cmdsr``). A task is one degradation of one HQ natural crop
    (``DataConfig.outer_patch``); support and query patches are in LR pixels."""

    support_patch: int = 32
    support_count: int = 8
    query_patch: int = 24
    query_count: int = 4
    cond_feat: int = 64
    cond_layers: int = 3
    modulate: tuple[str, ...] = ("body.",)  # RRDBNet conv-name prefixes the ConditionNet modulates
    lr_cond: float = 1e-4
    train_sr: bool = False  # also train θ (at OptimConfig.lr_sr); by default θ is frozen
    val_images: int = 1  # the last natural images (sorted) are held out for the query-L1 check
    val_tasks: int = 8


@dataclass(frozen=True)
class RunConfig:
    method: str = "metaf2n"  # "metaf2n" (MetaF2N meta-training) or "cmdsr"
    out_dir: Path = Path("runs/meta")
    steps: int = 1000
    seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 10
    sr_weights: Path | None = None  # Real-ESRGAN generator to start θ from
    disc_weights: Path | None = None  # Real-ESRGAN netD to start D from
    resume: Path | None = None  # a training checkpoint (file or the run folder)


@dataclass(frozen=True)
class TrainConfig:
    net: NetConfig = field(default_factory=NetConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    run: RunConfig = field(default_factory=RunConfig)
    cmdsr: CmdsrConfig = field(default_factory=CmdsrConfig)

    def __post_init__(self) -> None:
        data = self.data
        if data.tasks_per_step < 1:
            raise ConfigError(f"tasks_per_step must be >= 1, got {data.tasks_per_step}")
        for name in ("inner_patch", "outer_patch"):
            size = getattr(data, name)
            if size % 8 or size < 16:
                raise ConfigError(f"{name} must be a multiple of 8 and >= 16 (LQ x4, discriminator /8), got {size}")
        if data.inner_patch > data.face_size:
            raise ConfigError(f"inner_patch {data.inner_patch} exceeds face_size {data.face_size}")
        if data.face_targets not in ("auto", "prior", "gt"):
            raise ConfigError(f"face_targets must be auto, prior or gt, got {data.face_targets!r}")
        for name in ("ss_window", "ss_patch"):
            if getattr(self.loss, name) % 2 == 0:
                raise ConfigError(f"{name} must be odd, got {getattr(self.loss, name)}")
        if not 0.0 <= self.optim.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1), got {self.optim.ema_decay}")
        if self.run.method not in ("metaf2n", "cmdsr"):
            raise ConfigError(f"training method must be metaf2n or cmdsr, got {self.run.method!r}")
        if self.run.method == "cmdsr":
            _check_cmdsr(self.cmdsr, data.outer_patch)


def _check_cmdsr(cmdsr: CmdsrConfig, crop: int) -> None:
    lq_side = crop // 4
    for name in ("support_patch", "query_patch"):
        size = getattr(cmdsr, name)
        if not 4 <= size <= lq_side:
            raise ConfigError(f"{name} must be in [4, outer_patch/4 = {lq_side}] LR pixels, got {size}")
    for name in ("support_count", "query_count", "cond_feat", "cond_layers", "val_tasks"):
        if getattr(cmdsr, name) < 1:
            raise ConfigError(f"{name} must be >= 1, got {getattr(cmdsr, name)}")
    if cmdsr.val_images < 0:
        raise ConfigError(f"val_images must be >= 0, got {cmdsr.val_images}")
    if not cmdsr.modulate:
        raise ConfigError("modulate needs at least one RRDBNet conv-name prefix")


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """JSON-ready dict (paths as strings)."""

    def convert(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, tuple):
            return list(value)
        return value

    return {group: {k: convert(v) for k, v in values.items()} for group, values in asdict(config).items()}


def saved_config(config: TrainConfig) -> dict[str, Any]:
    """``config`` as a train state records it: the resume path is a property of this
    invocation, not of the run."""
    return config_to_dict(replace(config, run=replace(config.run, resume=None)))


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Inverse of :func:`config_to_dict`; unknown keys are a ConfigError."""
    kwargs: dict[str, Any] = {}
    for group, values in data.items():
        if group not in _GROUPS:
            raise ConfigError(f"unknown config group {group!r}, expected one of {sorted(_GROUPS)}")
        cls = _GROUPS[group]
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"unknown {group} option(s) {unknown}, expected among {sorted(known)}")
        kwargs[group] = cls(**{k: _restore(k, v) for k, v in values.items()})
    return TrainConfig(**kwargs)


_GROUPS = {"net": NetConfig, "loss": LossConfig, "optim": OptimConfig, "data": DataConfig, "run": RunConfig,
           "cmdsr": CmdsrConfig}
_PATH_FIELDS = {"faces_dir", "natural_dir", "out_dir", "sr_weights", "disc_weights", "resume"}


def _restore(name: str, value: Any) -> Any:
    if name in _PATH_FIELDS and value is not None:
        return Path(value)
    if name in ("betas", "modulate"):
        return tuple(value)
    return value
