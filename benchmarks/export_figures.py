"""The figures of docs/export.md, built and timed with the benchmark harness
(:mod:`f2n.benchmarks`: its engines, θ_n stand-in, photo and timing), so that they
measure what ``f2n-bench`` measures:

- ``python -m f2n.benchmarks.export_figures engines``: per-photo weight hand-over and per-tile
  speed of the SR engines, plus ONNX Runtime with fixed (not replaceable) weights;
- ``python -m f2n.benchmarks.export_figures networks``: GPEN-BFR-256 and MaskNet, eager PyTorch vs
  ONNX Runtime (is exporting them worth it?). Needs ``onnxscript`` (not an f2n
  dependency): GPEN exports only through the torch.export-based exporter.

One thread by default; medians of process CPU time (``f2n.benchmarks.timing``)."""

import importlib.util
import tempfile
from collections.abc import Callable
from pathlib import Path

import click
import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from f2n.benchmarks import stages, timing
from f2n.export.onnx_export import INPUT_NAME, cached_onnx
from f2n.nets.gpen import GPEN
from f2n.nets.masknet import MaskNet
from f2n.weights.registry import find_spec

ENGINE_KINDS = ("onnx-inputs", "onnx-reinit", "torch")  # benchmark stage names; aoti optional


def median_seconds(run: Callable[[], object], rounds: int) -> float:
    return timing.measure(run, rounds, clock="cpu").seconds


def session(path: Path) -> ort.InferenceSession:
    """All of ONNX Runtime's optimisations, the thread count every stage gets."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = stages.threads()
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@click.group()
@click.option("--threads", default=1, show_default=True, help="torch and ONNX Runtime threads")
def main(threads: int) -> None:
    torch.set_num_threads(threads)  # stages.threads() hands torch's count to every library


@main.command()
@click.option("--tile", default=32, show_default=True, help="LR px of the timed tile")
@click.option("--rounds", default=3, show_default=True)
@click.option("--aoti/--no-aoti", default=True, show_default=True, help="include AOTInductor (compiles on a cache miss: minutes)")
def engines(tile: int, rounds: int, aoti: bool) -> None:
    """set_weights(θ_n), set_weights + one tile, and a steady tile, per SR engine."""
    model = stages.sr_model("real")
    theta = stages.perturbed_weights(model)
    tiles = torch.from_numpy(stages.photo_rgb(tile, tile)).permute(2, 0, 1)[None].contiguous()
    click.echo(f"Real-ESRGAN x4plus, tile 1x3x{tile}x{tile}, {stages.threads()} thread(s), median of {rounds}, process CPU time")
    fixed = session(cached_onnx(model))
    click.echo(f"onnx, all optimisations, fixed weights: run {median_seconds(lambda: fixed.run(None, {INPUT_NAME: tiles.numpy()}), rounds):.3f} s")
    for kind in ENGINE_KINDS + (("aoti",) if aoti else ()):
        engine = stages.make_engine(kind, "fp32", "cpu")
        swap = median_seconds(lambda: engine.set_weights(theta), rounds)
        swap_and_tile = median_seconds(lambda: (engine.set_weights(theta), engine.run(tiles)), rounds)
        steady = median_seconds(lambda: engine.run(tiles), rounds)
        click.echo(f"{kind}: set_weights {swap:.3f} s, set_weights + one tile {swap_and_tile:.3f} s, steady run {steady:.3f} s")


@main.command()
@click.option("--rounds", default=3, show_default=True)
def networks(rounds: int) -> None:
    """GPEN-BFR-256 (random weights, official layout) on one face and MaskNet on 16
    patch pairs: eager PyTorch vs ONNX Runtime, in one process."""
    if importlib.util.find_spec("onnxscript") is None:
        raise click.ClickException("needs onnxscript for torch.onnx.export(dynamo=True): pip install onnxscript")
    torch.manual_seed(0)
    gpen = GPEN(**dict(find_spec("gpen-bfr-256").network.kwargs))
    generator = torch.Generator().manual_seed(0)
    cases = (
        ("GPEN-BFR-256, 1x3x256x256", gpen, (torch.rand(1, 3, 256, 256, generator=generator) * 2 - 1,)),
        ("MaskNet, 16x(3+3)x64x64", MaskNet(), (torch.rand(16, 3, 64, 64, generator=generator), torch.rand(16, 3, 64, 64, generator=generator))),
    )
    click.echo(f"{stages.threads()} thread(s), median of {rounds}, process CPU time")
    for name, network, inputs in cases:
        eager, onnx_runtime, difference = _eager_vs_ort(network.eval(), inputs, rounds)
        click.echo(f"{name}: eager {eager:.3f} s, ONNX Runtime {onnx_runtime:.3f} s ({eager / onnx_runtime:.2f}x), max abs difference {difference:.2g}")


def _eager_vs_ort(network: nn.Module, inputs: tuple[torch.Tensor, ...], rounds: int) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory(prefix="f2n-measure-") as folder:
        path = Path(folder) / "network.onnx"
        torch.onnx.export(network, inputs, str(path), dynamo=True, verbose=False)
        onnx_session = session(path)
    feeds = {spec.name: value.numpy() for spec, value in zip(onnx_session.get_inputs(), inputs)}
    difference = float(np.abs(onnx_session.run(None, feeds)[0] - _inferred(network, inputs).numpy()).max())
    eager = median_seconds(lambda: _inferred(network, inputs), rounds)  # not inside inference_mode: the reference workload runs a backward
    return eager, median_seconds(lambda: onnx_session.run(None, feeds), rounds), difference


@torch.inference_mode()
def _inferred(network: nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    return network(*inputs)


if __name__ == "__main__":
    main()
