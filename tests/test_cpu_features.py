"""The one probe of CPU features: flags -> features -> machine class, and the refusal of
emulated bf16 it drives (torch engine, the benchmark stage, ``auto``), tested as plain
functions for CPUs other than this one (this one has AVX512-BF16; CI's may not)."""

import pytest

from f2n import cpu_features
from f2n.benchmarks.regression import measure_stage
from f2n.benchmarks.suites import _sr
from f2n.cpu_features import cpu_class, features_from_flags, parse_cpuinfo
from f2n.errors import EngineUnavailableError
from f2n.runtime.engine_choice import Platform, choose_engine, probe_platform
from f2n.export.torch_engine import TorchEngine

# Trimmed /proc/cpuinfo of real machines: an AMD EPYC with AVX2 only (Zen 3, issue 27's CI
# machine class), a Zen 4 with AVX512-BF16 (this workplace), a Sapphire Rapids with AMX, an Arm Neoverse-V1.
ZEN3 = "vendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx fma avx2 bmi2 sha_ni\n"
ZEN4 = ("vendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\n"
        "flags\t\t: fpu avx2 avx512f avx512dq avx512_vnni avx512_bf16 avx512_vbmi2\n")
SPR = ("vendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n"
       "flags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n")
NEOVERSE = "processor\t: 0\nBogoMIPS\t: 2100.00\nFeatures\t: fp asimd sve bf16 i8mm\nCPU implementer\t: 0x41\n"


@pytest.mark.parametrize(("cpuinfo", "bf16", "klass"), [
    (ZEN3, False, "cpu-amd-epyc-7b13-2c-avx2"),
    (ZEN4, True, "cpu-amd-epyc-2c-avx512bf16"),
    (SPR, True, "cpu-intel-r-xeon-r-platinum-8480-2c-amx"),
])
def test_machine_class_names_what_decides_speed(cpuinfo: str, bf16: bool, klass: str) -> None:
    flags, vendor = parse_cpuinfo(cpuinfo)
    features = features_from_flags(flags, vendor)
    assert features.bf16 is bf16
    model = next(line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name"))
    assert cpu_class(model, 2, features) == klass


def test_a_bf16_baseline_is_never_the_class_of_a_cpu_without_it() -> None:
    without = features_from_flags(parse_cpuinfo(ZEN3)[0], "amd")
    with_bf16 = features_from_flags(parse_cpuinfo(ZEN4)[0], "amd")
    assert cpu_class("AMD EPYC", 2, without) != cpu_class("AMD EPYC", 2, with_bf16)


def test_arm_features_and_a_model_without_vendor() -> None:
    flags, vendor = parse_cpuinfo(NEOVERSE)
    features = features_from_flags(flags, vendor)
    assert features.bf16 and not features.avx2 and vendor == "arm"
    assert cpu_class("Neoverse-V1", 4, features) == "cpu-arm-neoverse-v1-4c-bf16"


def test_the_probe_agrees_with_openvino_and_auto() -> None:
    """engine_choice, the machine class and OpenVINO's own view of this CPU say the same."""
    openvino = pytest.importorskip("openvino")
    openvino_bf16 = "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    assert cpu_features.native_bf16() is openvino_bf16
    assert probe_platform("cpu").cpu_bf16 is openvino_bf16


@pytest.fixture()
def no_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """This CPU as if it had no native bf16 (the flags of ZEN3)."""
    monkeypatch.setattr(cpu_features, "this_cpu", lambda: features_from_flags(parse_cpuinfo(ZEN3)[0], "amd"))


def test_torch_bf16_on_a_cpu_without_it_is_refused(no_bf16: None, tiny_rrdbnet) -> None:
    with pytest.raises(EngineUnavailableError, match="needs a CPU with AVX512-BF16 or AMX.*use --precision fp32"):
        TorchEngine(tiny_rrdbnet(), precision="bf16")
    TorchEngine(tiny_rrdbnet(), precision="fp32")  # fp32 stays


def test_the_torch_bf16_stage_is_skipped_with_the_reason(no_bf16: None) -> None:
    result = measure_stage(_sr("torch", "bf16", "cpu", 16, network="tiny"), rounds=1, warmup=0)
    assert result.seconds is None and not result.error
    assert "needs a CPU with AVX512-BF16 or AMX" in result.unavailable


def test_auto_refuses_bf16_without_openvino_too() -> None:
    with pytest.raises(EngineUnavailableError, match="bf16 needs a CPU with AVX512-BF16 or AMX"):
        choose_engine(Platform("cpu", openvino=False, cpu_bf16=False), "bf16")
