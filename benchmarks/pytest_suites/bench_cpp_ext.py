"""Fused RRDB operator (f2n.cpp_ext) against the plain PyTorch block.

pytest-benchmark: ``python -m pytest benchmarks/pytest_suites/bench_cpp_ext.py --benchmark-enable``
(without the flag each case runs once as a smoke test). As a script it writes the
comparison table of docs/cpp_ext.md:
``python benchmarks/pytest_suites/bench_cpp_ext.py --device cpu --out benchmarks/results/cpp_ext_cpu.md``.

Workloads on one 64-feat/32-growth RRDB block: forward, forward+backward (weight
and input gradients), and the MAML step (inner gradient with create_graph, outer
gradient through it). Activation memory is the bytes autograd saves for backward
(unique storages), on any device; on CUDA the peak allocated memory
(max_memory_allocated above the start) is reported as well.
"""

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch.func import functional_call

from f2n import cpp_ext
from f2n.benchmarks.machine import cpu_model, gpu_name, usable_cores
from f2n.errors import EngineUnavailableError
from f2n.nets.rrdbnet import RRDB


@dataclass(frozen=True)
class Case:
    name: str
    batch: int
    size: int  # LR patch height = width
    workloads: tuple[str, ...]


CASES = (
    Case("train-32", 4, 32, ("forward", "forward+backward", "maml-step")),
    Case("train-64", 4, 64, ("forward", "forward+backward", "maml-step")),
    Case("tile-128", 1, 128, ("forward",)),
)
NUM_FEAT, NUM_GROW = 64, 32


def make_workload(case: Case, workload: str, device: torch.device) -> Callable[[], None]:
    torch.manual_seed(0)
    block = RRDB(NUM_FEAT, NUM_GROW).to(device)
    x = torch.randn(case.batch, NUM_FEAT, case.size, case.size, device=device)
    target = torch.randn_like(x)
    params = dict(block.named_parameters())

    def forward() -> None:
        with torch.no_grad():
            block(x)

    def forward_backward() -> None:
        loss = (block(x) - target).abs().mean()
        torch.autograd.grad(loss, list(params.values()))

    def maml_step() -> None:
        inner = (functional_call(block, params, (x,)) - target).abs().mean()
        grads = torch.autograd.grad(inner, list(params.values()), create_graph=True)
        adapted = {k: p - 1e-3 * g for (k, p), g in zip(params.items(), grads)}
        outer = (functional_call(block, adapted, (x.flip(-1),)) - target).abs().mean()
        torch.autograd.grad(outer, list(params.values()))

    return {"forward": forward, "forward+backward": forward_backward, "maml-step": maml_step}[workload]


def saved_activation_bytes(fn: Callable[[], None]) -> int:
    """Bytes of the distinct storages autograd saves while ``fn`` runs."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if not isinstance(t, torch.nn.Parameter):
            storage = t.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(storages.values())


def peak_cuda_bytes(fn: Callable[[], None], device: torch.device) -> int | None:
    """Peak CUDA memory allocated while ``fn`` runs, above what was allocated before.

    None on CPU: torch.profiler books frees made inside an op at the op's end, which
    overstates the peak of ops that allocate and free internally (like this one)."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - base


def seconds(fn: Callable[[], None], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def ensure_loaded(device: torch.device) -> None:
    cpp_ext.load(build=True, cuda=device.type == "cuda")


# --- pytest-benchmark ----------------------------------------------------------------

PARAMS = [
    pytest.param(case, workload, mode, id=f"{case.name}-{workload}-{mode}")
    for case in CASES
    for workload in case.workloads
    for mode in ("plain", "fused")
]


@pytest.mark.parametrize("case, workload, mode", PARAMS)
def test_rrdb(benchmark, monkeypatch, case: Case, workload: str, mode: str) -> None:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if mode == "fused":
        try:
            ensure_loaded(device)
        except EngineUnavailableError as reason:
            pytest.skip(str(reason))
    cpp_ext.use_fused_rrdb("on" if mode == "fused" else "off")
    run = make_workload(case, workload, device)
    benchmark.group = f"{case.name} {workload}"
    benchmark.extra_info.update(
        activation_bytes=saved_activation_bytes(run), peak_cuda_bytes=peak_cuda_bytes(run, device), device=device.type
    )
    benchmark.pedantic(lambda: seconds(run, device), rounds=3, warmup_rounds=1)


# --- comparison table ------------------------------------------------------------------


def compare(case: Case, workload: str, device: torch.device, rounds: int) -> str:
    """One markdown row: median times (plain and fused interleaved), ratio, memory."""
    runs = {}
    for mode in ("off", "on"):
        cpp_ext.use_fused_rrdb(mode)
        runs[mode] = make_workload(case, workload, device)
        runs[mode]()  # warm-up (oneDNN / cuDNN plan selection)
    times: dict[str, list[float]] = {"off": [], "on": []}
    memory: dict[str, tuple[int, int | None]] = {}
    for _ in range(rounds):
        for mode in ("off", "on"):
            cpp_ext.use_fused_rrdb(mode)
            times[mode].append(seconds(runs[mode], device))
    for mode in ("off", "on"):
        cpp_ext.use_fused_rrdb(mode)
        memory[mode] = (saved_activation_bytes(runs[mode]), peak_cuda_bytes(runs[mode], device))
    plain, fused = (statistics.median(times[m]) * 1e3 for m in ("off", "on"))
    def pair(i: int) -> str:
        off, on = memory["off"][i], memory["on"][i]
        if off is None or on is None:
            return "-"
        change = f" ({on / off - 1:+.0%})" if off else ""
        return f"{off / 2**20:.1f} / {on / 2**20:.1f}{change}"

    return (
        f"| {case.name} (N={case.batch}, {case.size}x{case.size}) | {workload} | {plain:.1f} | {fused:.1f} | "
        f"{plain / fused:.2f}x | {pair(0)} | {pair(1)} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="fused vs plain RRDB block: time and memory table")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None, help="write the markdown table here too")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    try:
        ensure_loaded(device)
    except EngineUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    machine = gpu_name() if device.type == "cuda" else f"{cpu_model()}, {usable_cores()} cores"
    lines = [
        f"Machine: {machine}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"one RRDB block, {NUM_FEAT} feat / {NUM_GROW} growth, fp32; median of {args.rounds} rounds.",
        "",
        "| shape | workload | plain ms | fused ms | speed-up | saved activations MiB plain / fused | peak CUDA MiB plain / fused |",
        "|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    for case in CASES:
        for workload in case.workloads:
            lines.append(compare(case, workload, device, args.rounds))
            print(lines[-1], flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
