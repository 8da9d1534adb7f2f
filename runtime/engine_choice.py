"""``--engine auto`` (the default): the fastest safe engine for the device.

The rule, from the measurements in docs/benchmarks.md ("Which engine ``auto`` runs"):

- CPU with OpenVINO and native bf16 (AVX512-BF16 or AMX): OpenVINO bf16
  (~2x OpenVINO fp32 and ncnn-class speed, ~54 dB against fp32 on a real photo);
- CPU with OpenVINO, no native bf16: OpenVINO fp32 (faster than torch fp32);
- CPU without OpenVINO: the torch engine, fp32;
- CUDA with TensorRT installed: TensorRT; without: the compiled torch engine (fp16).

An explicit ``--precision`` is honoured: ``fp32`` on a bf16 CPU gives OpenVINO fp32.
:func:`choose_engine` is the rule, a plain function of a :class:`Platform`;
:func:`probe_platform` is the only place that looks at the machine.
"""

from dataclasses import asdict, dataclass

from f2n import cpu_features
from f2n.errors import ConfigError, EngineUnavailableError

AUTO = "auto"


@dataclass(frozen=True)
class Platform:
    """What the machine offers the engines."""

    device: str  # "cpu" or "cuda"
    openvino: bool = False  # the openvino package imports
    cpu_bf16: bool = False  # the CPU computes bf16 natively (AVX512-BF16 or AMX; f2n.cpu_features)
    tensorrt: bool = False  # the tensorrt package imports and a CUDA GPU is visible


@dataclass(frozen=True)
class EngineChoice:
    """The engine and precision a run uses, and why (for the log line and the JSON report)."""

    requested: str
    engine: str
    precision: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def choose_engine(platform: Platform, precision: str | None = None) -> EngineChoice:
    """The ``auto`` rule (module docstring); ``precision``: the user's ``--precision`` if given."""
    if platform.device == "cuda":
        chosen = precision or "fp16"
        if platform.tensorrt:
            return EngineChoice(AUTO, "trt", chosen, "CUDA with TensorRT installed: TensorRT with weight refit")
        return EngineChoice(AUTO, "torch", chosen, "CUDA without TensorRT: the compiled torch engine")
    if precision == "fp16":
        raise ConfigError("--precision fp16 needs --device cuda; on the CPU use bf16 or fp32")
    if precision == "bf16" and not platform.cpu_bf16:  # every CPU engine would emulate it
        raise EngineUnavailableError(
            "--precision bf16 needs a CPU with AVX512-BF16 or AMX, this one has neither; use --precision fp32")
    if not platform.openvino:
        return EngineChoice(AUTO, "torch", precision or "fp32", "CPU without the openvino package: the torch engine")
    if precision is None and platform.cpu_bf16:
        return EngineChoice(AUTO, "openvino", "bf16", "CPU with native bf16 (AVX512-BF16 or AMX): OpenVINO bf16")
    why = "fp32 asked for" if precision == "fp32" else "no native bf16 on this CPU"
    return EngineChoice(AUTO, "openvino", "fp32", f"CPU, {why}: OpenVINO fp32")


def resolve_engine(requested: str, device: str, precision: str | None) -> EngineChoice:
    """``auto`` through the rule on this machine; a named engine as given (the user forced it),
    with the device's default precision (fp16 on CUDA, fp32 on the CPU) when none is given."""
    if requested == AUTO:
        return choose_engine(probe_platform(device), precision)
    chosen = precision or ("fp16" if device == "cuda" else "fp32")
    return EngineChoice(requested, requested, chosen, "asked for with --engine")


def probe_platform(device: str) -> Platform:
    """Look at this machine: which engine packages import, and the CPU's bf16 support."""
    if device == "cuda":
        return Platform(device, tensorrt=_tensorrt_usable())
    bf16 = cpu_features.native_bf16()
    try:
        from f2n.export.openvino_engine import import_openvino

        import_openvino()
    except (ImportError, EngineUnavailableError):  # f2n.export or openvino missing: no OpenVINO here
        return Platform(device, cpu_bf16=bf16)
    return Platform(device, openvino=True, cpu_bf16=bf16)


def _tensorrt_usable() -> bool:
    try:
        from f2n.export.trt_engine import import_tensorrt

        import_tensorrt()
    except (ImportError, EngineUnavailableError):
        return False
    return True
