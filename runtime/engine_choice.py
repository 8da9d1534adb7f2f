"""``--engine auto`` (the default): the fastest safe engine for the device.

On the CPU the choice is made by measurement, once per machine class (:mod:`f2n.runtime.engine_probe`
times each candidate engine on a small input and caches the figures under ``$F2N_HOME``): the
fastest candidate per photo (weight hand-over + tiles) whose output is within
:data:`QUALITY_FLOOR_DB` of the torch engine's fp32 output. Candidates: ncnn, OpenVINO and torch in
fp32, and OpenVINO and torch in bf16 where the CPU computes bf16 natively (AVX512-BF16 or AMX; f2n
refuses emulated bf16). Without measurements (probe off, or none qualifies) the rule from the
measurements in docs/benchmarks.md ("Which engine ``auto`` runs") applies:

- CPU with OpenVINO and native bf16: OpenVINO bf16 (1.41x ncnn there, issue 27);
- CPU otherwise: ncnn fp32 (1.24x OpenVINO fp32 on a 2-core AVX2 EPYC, issue 27), else OpenVINO
  fp32, else the torch engine;
- CUDA with TensorRT installed: TensorRT; without: the compiled torch engine (fp16).

An explicit ``--precision`` is honoured (only candidates of that precision), and bf16 on a CPU
without it is refused. :func:`choose_engine` is the rule, a plain function of a :class:`Platform`
and the measurements; :func:`probe_platform` and the probe are the only places that look at the machine.
"""

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib.util import find_spec

from f2n import cpu_features
from f2n.errors import ConfigError, EngineUnavailableError
from f2n.export import openvino_engine
from f2n.export.trt_engine import import_tensorrt

AUTO = "auto"
QUALITY_FLOOR_DB = 50.0  # PSNR against the torch engine's fp32 output on the probe's photo
PHOTO_LR_MEGAPIXELS = 256 * 256 / 1e6  # the photo size per-photo costs are weighed at: hand-over + tiles


@dataclass(frozen=True)
class Platform:
    """What the machine offers the engines."""

    device: str  # "cpu" or "cuda"
    openvino: bool = False  # the openvino package imports
    cpu_bf16: bool = False  # the CPU computes bf16 natively (AVX512-BF16 or AMX; f2n.cpu_features)
    tensorrt: bool = False  # the tensorrt package imports and a CUDA GPU is visible
    ncnn: bool = False  # the ncnn package is installed


@dataclass(frozen=True)
class Measurement:
    """One candidate engine timed by the probe on this machine class."""

    engine: str
    precision: str
    handover_seconds: float = 0.0  # set_weights(θ′): paid once per photo
    seconds_per_megapixel: float = 0.0  # tiles, per LR megapixel
    psnr_db: float = 0.0  # output against the torch engine's fp32 output on the probe's photo
    error: str = ""  # the candidate could not be built or run here

    @property
    def photo_seconds(self) -> float:
        return self.handover_seconds + self.seconds_per_megapixel * PHOTO_LR_MEGAPIXELS


@dataclass(frozen=True)
class EngineChoice:
    """The engine and precision a run uses, and why (for the log line and the JSON report)."""

    requested: str
    engine: str
    precision: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


Measure = Callable[[tuple[tuple[str, str], ...]], Sequence[Measurement]]


def cpu_candidates(platform: Platform, precision: str | None = None) -> tuple[tuple[str, str], ...]:
    """(engine, precision) pairs ``auto`` may run on this CPU, fastest-expected first."""
    found = []
    if platform.cpu_bf16:
        found += [("openvino", "bf16")] if platform.openvino else []
        found += [("torch", "bf16")]
    found += [("ncnn", "fp32")] if platform.ncnn else []
    found += [("openvino", "fp32")] if platform.openvino else []
    found += [("torch", "fp32")]
    return tuple(pair for pair in found if precision in (None, pair[1]))


def choose_engine(platform: Platform, precision: str | None = None,
                  measurements: Sequence[Measurement] = ()) -> EngineChoice:
    """The ``auto`` rule (module docstring); ``precision``: the user's ``--precision`` if given;
    ``measurements``: the probe's figures for this machine class (none: the measured rule)."""
    if platform.device == "cuda":
        chosen = precision or "fp16"
        if platform.tensorrt:
            return EngineChoice(AUTO, "trt", chosen, "CUDA with TensorRT installed: TensorRT with weight refit")
        return EngineChoice(AUTO, "torch", chosen, "CUDA without TensorRT: the compiled torch engine")
    if precision == "fp16":
        raise ConfigError("--precision fp16 needs --device cuda; on the CPU use bf16 or fp32")
    if precision == "bf16" and not platform.cpu_bf16:  # every CPU engine would emulate it
        raise EngineUnavailableError(
            f"--precision bf16 needs a CPU with {cpu_features.BF16_NEEDS}, this one has neither; use --precision fp32")
    allowed = set(cpu_candidates(platform, precision))
    usable = sorted((m for m in measurements if (m.engine, m.precision) in allowed and not m.error
                     and m.psnr_db >= QUALITY_FLOOR_DB), key=lambda m: m.photo_seconds)
    if usable:
        return EngineChoice(AUTO, usable[0].engine, usable[0].precision, _measured_reason(usable, measurements))
    return _rule(platform, precision, "no probe measurements" if not measurements else
                 f"no measured candidate reached {QUALITY_FLOOR_DB:.0f} dB")


def _measured_reason(usable: list[Measurement], measurements: Sequence[Measurement]) -> str:
    best = usable[0]
    size = round((PHOTO_LR_MEGAPIXELS * 1e6) ** 0.5)
    text = (f"fastest measured on this CPU class: {best.photo_seconds:.2f} s per {size}x{size} photo "
            f"({best.psnr_db:.1f} dB vs torch fp32)")
    if len(usable) > 1:
        runner_up = usable[1]
        text += (f", next {runner_up.engine} {runner_up.precision} {runner_up.photo_seconds:.2f} s "
                 f"({runner_up.photo_seconds / best.photo_seconds:.2f}x)")
    below = [m for m in measurements if not m.error and m.psnr_db < QUALITY_FLOOR_DB]
    if below:
        text += "; under the quality floor: " + ", ".join(f"{m.engine} {m.precision} {m.psnr_db:.1f} dB" for m in below)
    return text


def _rule(platform: Platform, precision: str | None, why_not_measured: str) -> EngineChoice:
    if platform.cpu_bf16 and precision in (None, "bf16"):
        if platform.openvino:
            return EngineChoice(AUTO, "openvino", "bf16", f"CPU with native bf16 (AVX512-BF16 or AMX), "
                                                          f"{why_not_measured}: OpenVINO bf16")
        if precision == "bf16":
            return EngineChoice(AUTO, "torch", "bf16", "bf16 asked for, no openvino package: the torch engine")
    why = "fp32 asked for" if precision == "fp32" else "no native bf16 on this CPU"
    if platform.ncnn:
        return EngineChoice(AUTO, "ncnn", "fp32", f"CPU, {why}, {why_not_measured}: ncnn fp32")
    if platform.openvino:
        return EngineChoice(AUTO, "openvino", "fp32", f"CPU, {why}, {why_not_measured}: OpenVINO fp32")
    return EngineChoice(AUTO, "torch", "fp32", "CPU without the ncnn and openvino packages: the torch engine")


def resolve_engine(requested: str, device: str, precision: str | None, measure: Measure | None = None) -> EngineChoice:
    """``auto`` through the rule on this machine (``measure``: the probe, given the candidates; on the
    CPU only); a named engine as given (the user forced it), with the device's default precision
    (fp16 on CUDA, fp32 on the CPU) when none is given."""
    if requested == AUTO:
        platform = probe_platform(device)
        measurements: Sequence[Measurement] = ()
        if device == "cpu" and measure is not None and not (precision == "bf16" and not platform.cpu_bf16):
            measurements = measure(cpu_candidates(platform, precision))
        return choose_engine(platform, precision, measurements)
    chosen = precision or ("fp16" if device == "cuda" else "fp32")
    return EngineChoice(requested, requested, chosen, "asked for with --engine")


def probe_platform(device: str) -> Platform:
    """Look at this machine: which engine packages import, and the CPU's bf16 support."""
    if device == "cuda":
        return Platform(device, tensorrt=_tensorrt_usable())
    bf16 = cpu_features.native_bf16()
    ncnn = find_spec("ncnn") is not None
    try:
        openvino_engine.import_openvino()
    except EngineUnavailableError:  # the openvino package is missing: no OpenVINO here
        return Platform(device, cpu_bf16=bf16, ncnn=ncnn)
    return Platform(device, openvino=True, cpu_bf16=bf16, ncnn=ncnn)


def _tensorrt_usable() -> bool:
    try:
        import_tensorrt()
    except EngineUnavailableError:  # no tensorrt package, or no CUDA GPU
        return False
    return True
