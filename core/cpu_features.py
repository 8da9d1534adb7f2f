"""What the CPU computes natively: the one probe of CPU features in f2n.

The benchmark machine class (:mod:`f2n.benchmarks.machine`), the ``auto`` engine rule
(:mod:`f2n.runtime.engine_choice`) and the engines that refuse emulated bf16 (torch, OpenVINO)
all read :func:`this_cpu`, so they cannot disagree. The decisions are plain functions of a
set of flags (:func:`features_from_flags`), testable for CPUs other than the one running.

Why these features: they decide which kernels run. bf16 is native with AVX512-BF16 or AMX
(x86) or the ``bf16`` feature (Arm); without it torch emulates bf16 (measured 150x slower than
native on a 2-core AMD EPYC, issue 27) and OpenVINO silently computes fp32.
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})  # x86 AVX512-BF16, x86 AMX, Arm FEAT_BF16
BF16_NEEDS = "AVX512-BF16 or AMX"  # how messages name what a bf16 CPU has


@dataclass(frozen=True)
class CpuFeatures:
    vendor: str  # "amd", "intel", "arm", ... (lower case; "" when unknown)
    bf16: bool  # bf16 dot products in hardware
    amx: bool
    avx512: bool  # AVX-512 foundation
    avx2: bool

    @property
    def tag(self) -> str:
        """The feature that decides speed most, for the machine class: amx, avx512bf16,
        avx512, avx2, or the bare ISA (``bf16`` on Arm with FEAT_BF16, else the machine's name)."""
        if self.amx:
            return "amx"
        if self.bf16:
            return "avx512bf16" if self.avx512 else "bf16"
        if self.avx512:
            return "avx512"
        if self.avx2:
            return "avx2"
        return _slug(platform.machine()) or "generic"


def _slug(text: str) -> str:
    return "".join(char for char in text.lower() if char.isalnum())


def features_from_flags(flags: frozenset[str] | set[str], vendor: str = "") -> CpuFeatures:
    """The features of a CPU with these kernel flags (``/proc/cpuinfo``'s ``flags`` or ``Features``)."""
    return CpuFeatures(
        vendor=vendor,
        bf16=bool(flags & BF16_FLAGS),
        amx="amx_bf16" in flags,
        avx512="avx512f" in flags,
        avx2="avx2" in flags,
    )


_VENDORS = {"authenticamd": "amd", "genuineintel": "intel", "hygongenuine": "hygon", "centaurhauls": "centaur"}


def parse_cpuinfo(text: str) -> tuple[frozenset[str], str]:
    """(flags, vendor) from the text of ``/proc/cpuinfo`` (x86 ``flags``/``vendor_id``, Arm ``Features``)."""
    flags: frozenset[str] = frozenset()
    vendor = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("flags", "features") and not flags:
            flags = frozenset(value.split())
        elif key == "vendor_id" and not vendor:
            vendor = _VENDORS.get(value.strip().lower(), _slug(value))
        elif key == "cpu implementer" and not vendor:
            vendor = "arm"
    return flags, vendor


@lru_cache(maxsize=1)
def this_cpu() -> CpuFeatures:
    """This machine's CPU. Linux: ``/proc/cpuinfo``; elsewhere torch's view of the vector
    ISA (no bf16 claimed: without flags f2n cannot tell, and emulated bf16 is the costly error)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        flags, vendor = parse_cpuinfo(cpuinfo.read_text(errors="replace"))
        if flags:
            return features_from_flags(flags, vendor)
    import torch  # only off Linux

    capability = torch.backends.cpu.get_cpu_capability().lower()  # "avx512", "avx2", "default", ...
    return features_from_flags({"avx512f", "avx2"} if capability == "avx512" else {capability}, _slug(platform.processor()))


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


def cpu_class(model: str, cores: int, features: CpuFeatures) -> str:
    """``cpu-<vendor+model>-<n>c-<feature>``, e.g. ``cpu-amd-epyc-2c-avx512bf16``: the vendor is
    prefixed where the model name lacks it, the feature is :attr:`CpuFeatures.tag`. Timings are
    comparable within a class only (benchmark baselines, the engine probe's cache)."""
    model_slug = re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-")
    if features.vendor and features.vendor not in model_slug.split("-"):
        model_slug = f"{features.vendor}-{model_slug}"
    return f"cpu-{model_slug}-{cores}c-{features.tag}"


def this_cpu_class() -> str:
    return cpu_class(cpu_model(), usable_cores(), this_cpu())


def native_bf16() -> bool:
    """True when this CPU computes bf16 in hardware (see the module docstring)."""
    return this_cpu().bf16
