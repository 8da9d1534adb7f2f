"""Real-ESRGAN's second-order degradation model, shared by meta-training and evaluation.

Two functions, kept apart so that a task's face patch and natural image get the same
degradation and so that a test set can store what it used:

* ``sample_params(seed_or_rng, config=..., ood=...)`` draws every random choice up front
  (kernels, resize factors and modes, noise kind and strength, JPEG qualities and the
  seeds of the noise) into a frozen, JSON-friendly ``DegradationParams``;
* ``degrade(hq, params, scale=4)`` applies them to a (N, 3, H, W) float batch on its
  device and returns (N, 3, H // scale, W // scale) in [0, 1].

The ranges are Real-ESRGAN's x4plus training settings (``DegradationConfig`` defaults).
``ood=True`` gives MetaF2N's out-of-distribution variant: linear motion blur instead of
the Gaussian-family blurs and multiplicative speckle noise instead of Gaussian/Poisson.

JPEG is real libjpeg-turbo through OpenCV (per image, on the CPU, also for CUDA batches)
rather than a differentiable DiffJPEG: the degradation makes training inputs and test
sets, no gradient flows through it. Everything else runs batched on the input's device.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from scipy import special

from f2n.errors import ConfigError, InputImageError

__all__ = [
    "BlurConfig",
    "DegradationConfig",
    "DegradationParams",
    "KernelSpec",
    "NoiseSpec",
    "StageConfig",
    "StageParams",
    "degrade",
    "make_kernel",
    "sample_params",
]

GAUSSIAN_FAMILIES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
RESIZE_MODES = ("area", "bilinear", "bicubic")
KERNEL_SIZES = tuple(range(7, 22, 2))  # odd sizes 7..21, as Real-ESRGAN


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class BlurConfig:
    """Blur-kernel ranges of one stage."""

    families: tuple[str, ...] = GAUSSIAN_FAMILIES
    family_probs: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sinc_prob: float = 0.1
    sigma_range: tuple[float, float] = (0.2, 3.0)
    betag_range: tuple[float, float] = (0.5, 4.0)  # generalised Gaussian shape
    betap_range: tuple[float, float] = (1.0, 2.0)  # plateau shape
    motion_length_range: tuple[float, float] = (3.0, 17.0)  # OOD only, in pixels of the stage's input


@dataclass(frozen=True)
class StageConfig:
    """Ranges of one degradation stage: blur, resize, noise, JPEG."""

    blur: BlurConfig = BlurConfig()
    resize_probs: tuple[float, float, float] = (0.2, 0.7, 0.1)  # up, down, keep
    resize_range: tuple[float, float] = (0.15, 1.5)
    gaussian_noise_prob: float = 0.5  # otherwise Poisson
    noise_range: tuple[float, float] = (1.0, 30.0)  # Gaussian sigma, in 8-bit levels
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    speckle_range: tuple[float, float] = (0.04, 0.25)  # OOD only: sigma of the multiplicative noise
    jpeg_range: tuple[float, float] = (30.0, 95.0)


@dataclass(frozen=True)
class DegradationConfig:
    """Real-ESRGAN x4plus settings (``options/train_realesrgan_x4plus.yml``)."""

    first: StageConfig = StageConfig()
    second: StageConfig = StageConfig(
        blur=BlurConfig(sigma_range=(0.2, 1.5), motion_length_range=(2.0, 9.0)),
        resize_probs=(0.3, 0.4, 0.3),
        resize_range=(0.3, 1.2),
        noise_range=(1.0, 25.0),
        poisson_scale_range=(0.05, 2.5),
        speckle_range=(0.04, 0.2),
    )
    second_blur_prob: float = 0.8
    final_sinc_prob: float = 0.8


# --------------------------------------------------------------------------- params


@dataclass(frozen=True)
class KernelSpec:
    """A blur kernel by its parameters; ``make_kernel`` turns it into weights.

    ``family``: one of GAUSSIAN_FAMILIES, "sinc", "motion" or "pulse" (identity).
    ``sigma_x``/``sigma_y``/``theta``/``beta`` for the Gaussian families, ``omega_c``
    (cut-off, radians) for sinc, ``length``/``theta`` for motion.
    """

    family: str
    size: int
    sigma_x: float = 0.0
    sigma_y: float = 0.0
    theta: float = 0.0
    beta: float = 1.0
    omega_c: float = 0.0
    length: float = 0.0


@dataclass(frozen=True)
class NoiseSpec:
    """``kind``: "gaussian" (``strength`` = sigma in [0, 1] units), "poisson"
    (``strength`` = scale) or "speckle" (``strength`` = sigma of the multiplier).
    ``seed`` drives the noise realisation on the image's device."""

    kind: str
    strength: float
    gray: bool
    seed: int


@dataclass(frozen=True)
class StageParams:
    blur: KernelSpec | None  # None: the stage's blur was skipped
    resize_factor: float
    resize_mode: str
    noise: NoiseSpec
    jpeg_quality: int  # stage 2: the final JPEG


@dataclass(frozen=True)
class DegradationParams:
    """Every random choice of one degradation. ``to_dict``/``from_dict`` for JSON."""

    first: StageParams
    second: StageParams
    final_sinc: KernelSpec  # "pulse" when no final sinc was drawn
    final_resize_mode: str
    jpeg_before_final_resize: bool
    ood: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DegradationParams:
        def stage(s: dict[str, Any]) -> StageParams:
            return StageParams(
                blur=KernelSpec(**s["blur"]) if s["blur"] is not None else None,
                resize_factor=s["resize_factor"],
                resize_mode=s["resize_mode"],
                noise=NoiseSpec(**s["noise"]),
                jpeg_quality=s["jpeg_quality"],
            )

        return cls(
            first=stage(d["first"]),
            second=stage(d["second"]),
            final_sinc=KernelSpec(**d["final_sinc"]),
            final_resize_mode=d["final_resize_mode"],
            jpeg_before_final_resize=d["jpeg_before_final_resize"],
            ood=d["ood"],
        )


# --------------------------------------------------------------------------- sampling


def _uniform(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return float(rng.uniform(lo_hi[0], lo_hi[1]))


def _split_beta(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    # Real-ESRGAN draws the shape below or above 1 with equal chance, so both
    # heavy- and light-tailed kernels are common whatever the range's width.
    return _uniform(rng, (lo_hi[0], 1.0)) if rng.uniform() < 0.5 else _uniform(rng, (1.0, lo_hi[1]))


def _sample_sinc(rng: np.random.Generator, size: int, wide: bool) -> KernelSpec:
    # Small kernels cannot carry a low cut-off without strong truncation ripple.
    low = math.pi / 5 if (wide and size >= 13) else math.pi / 3
    return KernelSpec("sinc", size, omega_c=_uniform(rng, (low, math.pi)))


def _sample_blur(rng: np.random.Generator, cfg: BlurConfig, ood: bool) -> KernelSpec:
    size = int(rng.choice(KERNEL_SIZES))
    if ood:
        length = _uniform(rng, cfg.motion_length_range)
        size = max(size, 2 * math.ceil(length / 2) + 1)
        return KernelSpec("motion", size, theta=_uniform(rng, (0.0, math.pi)), length=length)
    if rng.uniform() < cfg.sinc_prob:
        return _sample_sinc(rng, size, wide=True)
    family = str(rng.choice(cfg.families, p=np.asarray(cfg.family_probs) / sum(cfg.family_probs)))
    if family.endswith("_iso") or family == "iso":
        sx = sy = _uniform(rng, cfg.sigma_range)
        theta = 0.0
    else:
        sx, sy = _uniform(rng, cfg.sigma_range), _uniform(rng, cfg.sigma_range)
        theta = _uniform(rng, (-math.pi, math.pi))
    beta = 1.0
    if family.startswith("generalized"):
        beta = _split_beta(rng, cfg.betag_range)
    elif family.startswith("plateau"):
        beta = _split_beta(rng, cfg.betap_range)
    return KernelSpec(family, size, sigma_x=sx, sigma_y=sy, theta=theta, beta=beta)


def _sample_stage(rng: np.random.Generator, cfg: StageConfig, blur: bool, ood: bool) -> StageParams:
    kernel = _sample_blur(rng, cfg.blur, ood) if blur else None
    direction = int(rng.choice(3, p=np.asarray(cfg.resize_probs) / sum(cfg.resize_probs)))
    factor = (_uniform(rng, (1.0, cfg.resize_range[1])), _uniform(rng, (cfg.resize_range[0], 1.0)), 1.0)[direction]
    mode = str(rng.choice(RESIZE_MODES))
    gray = bool(rng.uniform() < cfg.gray_noise_prob)
    seed = int(rng.integers(0, 2**31 - 1))
    if ood:
        noise = NoiseSpec("speckle", _uniform(rng, cfg.speckle_range), gray, seed)
    elif rng.uniform() < cfg.gaussian_noise_prob:
        noise = NoiseSpec("gaussian", _uniform(rng, cfg.noise_range) / 255.0, gray, seed)
    else:
        noise = NoiseSpec("poisson", _uniform(rng, cfg.poisson_scale_range), gray, seed)
    quality = int(round(_uniform(rng, cfg.jpeg_range)))
    return StageParams(kernel, factor, mode, noise, quality)


def sample_params(
    seed_or_rng: int | np.random.Generator,
    *,
    config: DegradationConfig = DegradationConfig(),
    ood: bool = False,
) -> DegradationParams:
    """Draw one degradation. The same seed gives the same parameters, everywhere."""
    if isinstance(seed_or_rng, np.random.Generator):
        rng = seed_or_rng
    elif isinstance(seed_or_rng, (int, np.integer)) and not isinstance(seed_or_rng, bool):
        rng = np.random.default_rng(int(seed_or_rng))
    else:
        raise ConfigError(f"seed_or_rng is {type(seed_or_rng).__name__}, expected an int or numpy.random.Generator")
    first = _sample_stage(rng, config.first, blur=True, ood=ood)
    second = _sample_stage(rng, config.second, blur=bool(rng.uniform() < config.second_blur_prob), ood=ood)
    if rng.uniform() < config.final_sinc_prob:
        final_sinc = _sample_sinc(rng, int(rng.choice(KERNEL_SIZES)), wide=False)
    else:
        final_sinc = KernelSpec("pulse", 1)
    final_mode = str(rng.choice(RESIZE_MODES))
    jpeg_first = bool(rng.uniform() < 0.5)
    return DegradationParams(first, second, final_sinc, final_mode, jpeg_first, ood=ood)


# --------------------------------------------------------------------------- kernels


def make_kernel(spec: KernelSpec) -> np.ndarray:
    """(size, size) float64 kernel that sums to 1."""
    if spec.size < 1 or spec.size % 2 == 0:
        raise ConfigError(f"kernel size is {spec.size}, expected a positive odd number")
    r = spec.size // 2
    y, x = np.mgrid[-r : r + 1, -r : r + 1].astype(np.float64)
    if spec.family == "pulse":
        k = (x == 0) & (y == 0)
    elif spec.family in GAUSSIAN_FAMILIES:
        # Mahalanobis distance under the rotated covariance diag(sx², sy²).
        c, s = math.cos(spec.theta), math.sin(spec.theta)
        u, v = c * x + s * y, -s * x + c * y
        d2 = (u / spec.sigma_x) ** 2 + (v / spec.sigma_y) ** 2
        if spec.family.startswith("plateau"):
            k = 1.0 / (d2**spec.beta + 1.0)
        else:  # Gaussian is the generalised Gaussian with beta = 1
            k = np.exp(-0.5 * d2**spec.beta)
    elif spec.family == "sinc":
        # Circular low-pass: the 2-D inverse transform of a disc of radius omega_c.
        rad = np.hypot(x, y)
        with np.errstate(divide="ignore", invalid="ignore"):
            k = spec.omega_c * special.j1(spec.omega_c * rad) / (2 * math.pi * rad)
        k[r, r] = spec.omega_c**2 / (4 * math.pi)
    elif spec.family == "motion":
        # Anti-aliased segment of the given length through the centre: weight falls
        # linearly with a pixel's distance to the segment, zero beyond one pixel.
        c, s = math.cos(spec.theta), math.sin(spec.theta)
        along = np.clip(c * x + s * y, -spec.length / 2, spec.length / 2)
        dist = np.hypot(x - along * c, y - along * s)
        k = np.clip(1.0 - dist, 0.0, None)
    else:
        raise ConfigError(f"kernel family is {spec.family!r}, expected one of {GAUSSIAN_FAMILIES + ('sinc', 'motion', 'pulse')}")
    k = np.asarray(k, dtype=np.float64)
    return k / k.sum()


# --------------------------------------------------------------------------- operations


def _filter(img: torch.Tensor, spec: KernelSpec) -> torch.Tensor:
    if spec.family == "pulse":
        return img
    k = torch.as_tensor(make_kernel(spec), dtype=img.dtype, device=img.device)
    pad = spec.size // 2
    # Reflect like Real-ESRGAN; tiny intermediate images (reflect needs pad < side) replicate.
    mode = "reflect" if pad < min(img.shape[-2:]) else "replicate"
    padded = F.pad(img, (pad, pad, pad, pad), mode=mode)
    weight = k.expand(img.shape[1], 1, *k.shape)
    return F.conv2d(padded, weight, groups=img.shape[1])


def _resize(img: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    size = (max(1, size[0]), max(1, size[1]))
    align = None if mode == "area" else False
    return F.interpolate(img, size=size, mode=mode, align_corners=align)


def _gray(img: torch.Tensor) -> torch.Tensor:
    w = torch.tensor([0.299, 0.587, 0.114], dtype=img.dtype, device=img.device).view(1, 3, 1, 1)
    return (img * w).sum(dim=1, keepdim=True)


def _add_noise(img: torch.Tensor, spec: NoiseSpec) -> torch.Tensor:
    gen = torch.Generator(device=img.device).manual_seed(spec.seed)
    n, c, h, w = img.shape
    channels = 1 if spec.gray else c
    if spec.kind == "gaussian":
        noise = torch.randn((n, channels, h, w), generator=gen, device=img.device, dtype=img.dtype) * spec.strength
        out = img + noise
    elif spec.kind == "speckle":
        noise = torch.randn((n, channels, h, w), generator=gen, device=img.device, dtype=img.dtype) * spec.strength
        out = img * (1.0 + noise)
    elif spec.kind == "poisson":
        base = _gray(img) if spec.gray else img
        base = (base.clamp(0, 1) * 255).round() / 255
        # Photon count per image: the number of distinct levels rounded up to a power of two.
        levels = torch.tensor(
            [2.0 ** math.ceil(math.log2(max(2, torch.unique(b).numel()))) for b in base],
            dtype=img.dtype,
            device=img.device,
        ).view(n, 1, 1, 1)
        noise = (torch.poisson(base * levels, generator=gen) / levels - base) * spec.strength
        out = img + noise
    else:
        raise ConfigError(f"noise kind is {spec.kind!r}, expected 'gaussian', 'poisson' or 'speckle'")
    return out.clamp(0, 1)


def _jpeg(img: torch.Tensor, quality: int) -> torch.Tensor:
    # libjpeg-turbo through OpenCV (4:2:0 chroma, as Real-ESRGAN's DiffJPEG), one image at
    # a time on the CPU; the bytes are tiny next to the network's work, so GPU batches
    # make the round trip too.
    u8 = (img.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    decoded = []
    for rgb in u8:
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise InputImageError(f"JPEG encoding failed for a {rgb.shape[1]}x{rgb.shape[0]} image at quality {quality}")
        decoded.append(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
    out = torch.from_numpy(np.ascontiguousarray(np.stack(decoded))).permute(0, 3, 1, 2)
    return out.to(device=img.device, dtype=img.dtype) / 255.0


def degrade(hq: torch.Tensor, params: DegradationParams, *, scale: int = 4) -> torch.Tensor:
    """Apply ``params`` to every image of ``hq`` (N, 3, H, W) float in [0, 1] on any
    device. Returns (N, 3, H // scale, W // scale) float32, quantised to 8-bit levels."""
    if hq.ndim != 4 or hq.shape[1] != 3:
        raise InputImageError(f"hq has shape {tuple(hq.shape)}, expected (N, 3, H, W)")
    if not hq.is_floating_point():
        raise InputImageError(f"hq has dtype {hq.dtype}, expected a float tensor in [0, 1]")
    h, w = hq.shape[-2:]
    if min(h, w) < 4 * scale:
        raise InputImageError(f"hq is {h}x{w}, expected at least {4 * scale} px per side for scale {scale}")
    out = hq.float().clamp(0, 1)

    # Stage 1 at HQ resolution.
    p = params.first
    if p.blur is not None:
        out = _filter(out, p.blur)
    out = _resize(out, (round(h * p.resize_factor), round(w * p.resize_factor)), p.resize_mode)
    out = _add_noise(out, p.noise)
    out = _jpeg(out, p.jpeg_quality)

    # Stage 2, sized relative to the LQ target.
    p = params.second
    if p.blur is not None:
        out = _filter(out, p.blur)
    out = _resize(out, (round(h / scale * p.resize_factor), round(w / scale * p.resize_factor)), p.resize_mode)
    out = _add_noise(out, p.noise)

    # Final: resize to LQ size + sinc (ringing), and JPEG, in a drawn order.
    lq_size = (h // scale, w // scale)
    if params.jpeg_before_final_resize:
        out = _jpeg(out, p.jpeg_quality)
        out = _filter(_resize(out, lq_size, params.final_resize_mode), params.final_sinc)
    else:
        out = _filter(_resize(out, lq_size, params.final_resize_mode), params.final_sinc)
        out = _jpeg(out, p.jpeg_quality)
    return ((out.clamp(0, 1) * 255).round() / 255).contiguous()
