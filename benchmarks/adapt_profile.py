"""Profile of one adaptation step on the CPU against the CPU's own convolution throughput
(issue 27, item 3): ``python -m f2n.benchmarks.adapt_profile``.

One step = forward of Real-ESRGAN x4plus on a photo's training pairs, backward, optimizer
update (``f2n.runtime.adapt.iter_adaptation``, as a run takes it). Each variant is timed in
process CPU time with one thread (as ``f2n-bench``), median of ``--steps`` steps after the
warm-up (compiled variants: their compile is the warm-up, reported apart). The FLOPs of a step
come from ``torch.utils.flop_counter``; the reference throughput is a dense 3x3 convolution of
the network's own shape (64 -> 64 channels) at the LR size, forward + input-gradient, so the
last column says how close the step is to what oneDNN reaches on this CPU for this layer type.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import replace

import torch
from torch.utils.flop_counter import FlopCounterMode

from f2n.cpu_features import native_bf16, this_cpu_class
from f2n.runtime.adapt import AdaptConfig, iter_adaptation
from f2n.runtime.types import PatchBatch
from f2n.weights import load_sr_network


def pairs(count: int, lq_size: int, channels_last: bool = False) -> PatchBatch:
    generator = torch.Generator().manual_seed(0)
    lq = torch.rand(count, 3, lq_size, lq_size, generator=generator)
    target = torch.rand(count, 3, 4 * lq_size, 4 * lq_size, generator=generator)
    if channels_last:
        lq, target = (x.contiguous(memory_format=torch.channels_last) for x in (lq, target))
    return PatchBatch(lq, target, torch.ones(count, 1, 4 * lq_size, 4 * lq_size))


def cpu_seconds(call: Callable[[], object]) -> float:
    start = time.process_time()
    call()
    return time.process_time() - start


def step_flops(model: torch.nn.Module, batch: PatchBatch, config: AdaptConfig) -> int:
    steps = iter_adaptation(model, batch, config)
    with FlopCounterMode(display=False) as counter:
        next(steps)
    return counter.get_total_flops()


def conv_gflops(count: int, lq_size: int, rounds: int = 5) -> float:
    """Dense 3x3 64->64 conv forward + input gradient at the LR size: the CPU's reachable rate."""
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).requires_grad_(False)
    x = torch.rand(count, 64, lq_size, lq_size, requires_grad=True)
    flops = 2 * 2 * count * 64 * 64 * 9 * lq_size * lq_size  # forward + grad wrt input, 2 FLOPs per MAC

    def run() -> None:
        conv(x).sum().backward()

    run()
    return flops / min(cpu_seconds(run) for _ in range(rounds)) / 1e9


def profile(count: int, lq_size: int, steps: int, variants: list[str]) -> list[tuple[str, float, float, float]]:
    """(variant, first-step CPU seconds, median step CPU seconds, GFLOP/s) per variant."""
    model = load_sr_network().model.eval()
    rows = []
    for variant in variants:
        params = "all" if "all" in variant else "bias"
        precision = "bf16" if "bf16" in variant else "fp32"
        if precision == "bf16" and not native_bf16():
            rows.append((variant, float("nan"), float("nan"), float("nan")))  # emulated: refused, not measured
            continue
        config = AdaptConfig(steps=1_000_000, precision=precision, params=params, compile="compiled" in variant,
                             holdout=0, guard=False)
        net = model.to(memory_format=torch.channels_last) if "channels_last" in variant else model
        batch = pairs(count, lq_size, channels_last="channels_last" in variant)
        iterator = iter_adaptation(net, batch, config)
        first = cpu_seconds(lambda: next(iterator))
        times = [cpu_seconds(lambda: next(iterator)) for _ in range(steps)]
        flops = step_flops(model.to(memory_format=torch.contiguous_format), batch, replace(config, compile=False))
        median = statistics.median(times)
        rows.append((variant, first, median, flops / median / 1e9))
    return rows


VARIANTS = ["fp32 bias", "fp32 bias channels_last", "bf16 bias", "fp32 bias compiled", "fp32 all", "bf16 all"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=6, help="training pairs (the default budget: 8, 2 held out)")
    parser.add_argument("--lq-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    reference = conv_gflops(args.pairs, args.lq_size)
    print(f"{this_cpu_class()}, 1 thread, {args.pairs} pairs of {args.lq_size}x{args.lq_size} LR; "
          f"dense 3x3 conv 64->64 fwd+input-grad: {reference:.1f} GFLOP/s")
    print("\n| variant | first step (s CPU) | step (s CPU, median) | GFLOP/s | of the conv rate |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for variant, first, median, rate in profile(args.pairs, args.lq_size, args.steps, args.variants.split(",")):
        print(f"| {variant} | {first:.2f} | {median:.2f} | {rate:.1f} | {rate / reference:.0%} |")


if __name__ == "__main__":
    main()
