"""Which machine class a run belongs to. Baselines are only comparable within a class:
the same GPU model, or the same CPU vendor and model with the same number of usable cores and
the same speed-deciding features (native bf16 / AMX, AVX-512, AVX2: :mod:`f2n.cpu_features`),
so a baseline from a bf16 CPU is never checked against one without."""

import platform
import re

import torch

from f2n.cpu_features import cpu_model, this_cpu, this_cpu_class, usable_cores


def gpu_name() -> str | None:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def machine_class() -> str:
    """``gpu-<model>`` where a CUDA device is visible, else :func:`f2n.cpu_features.cpu_class` of this CPU."""
    gpu = gpu_name()
    if gpu is not None:
        return f"gpu-{_slug(gpu)}"
    return this_cpu_class()


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
