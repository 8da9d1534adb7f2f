"""Which machine class a run belongs to. Baselines are only comparable within a class:
the same GPU model, or the same CPU vendor and model with the same number of usable cores and
the same speed-deciding features (native bf16 / AMX, AVX-512, AVX2: :mod:`f2n.cpu_features`),
so a baseline from a bf16 CPU is never checked against one without."""

import os
import platform
import re
from pathlib import Path

import torch

from f2n.cpu_features import CpuFeatures, this_cpu


def cpu_model() -> str:
    """The CPU's model name as the kernel reports it (platform's name elsewhere)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, not the host's total)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def gpu_name() -> str | None:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def cpu_class(model: str, cores: int, features: CpuFeatures) -> str:
    """``cpu-<vendor+model>-<n>c-<feature>``, e.g. ``cpu-amd-epyc-2c-avx512bf16``: the vendor is
    prefixed where the model name lacks it, the feature is :attr:`CpuFeatures.tag`."""
    model_slug = _slug(model)
    if features.vendor and features.vendor not in model_slug.split("-"):
        model_slug = f"{features.vendor}-{model_slug}"
    return f"cpu-{model_slug}-{cores}c-{features.tag}"


def machine_class() -> str:
    """``gpu-<model>`` where a CUDA device is visible, else :func:`cpu_class` of this CPU."""
    gpu = gpu_name()
    if gpu is not None:
        return f"gpu-{_slug(gpu)}"
    return cpu_class(cpu_model(), usable_cores(), this_cpu())


def describe_machine() -> dict[str, str | int]:
    """What a result file records about where it was measured."""
    return {
        "machine_class": machine_class(),
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "cpu_features": this_cpu().tag,
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu_name() or "none",
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
