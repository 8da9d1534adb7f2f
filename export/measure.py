"""Measure the per-photo weight replacement variants and per-tile speed of the engines
(the figures in docs/export.md): ``python -m f2n.export.measure [--tile 32] [--threads 1]``.
Uses Real-ESRGAN x4plus and a random θ_n of the same shapes."""

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import click
import onnxruntime as ort
import torch

from f2n.export.aoti import load_aoti_engine
from f2n.export.onnx_export import cached_onnx
from f2n.export.ort_engine import REPLACEMENTS, OrtEngine
from f2n.runtime.torch_engine import TorchEngine
from f2n.weights import load_sr_network


def median_seconds(action: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def perturbed(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A stand-in θ_n: every weight changed, as after adaptation."""
    return {key: value + 1e-3 * torch.randn_like(value) for key, value in weights.items()}


@click.command()
@click.option("--weights", default="realesrgan-x4plus", show_default=True)
@click.option("--tile", default=32, show_default=True, help="LR px of the timed tile")
@click.option("--threads", default=1, show_default=True, help="torch and ONNX Runtime threads")
@click.option("--repeats", default=3, show_default=True)
@click.option("--aoti/--no-aoti", default=True, show_default=True, help="include AOTInductor (compiles on a cache miss: minutes)")
def main(weights: str, tile: int, threads: int, repeats: int, aoti: bool) -> None:
    torch.set_num_threads(threads)
    loaded = load_sr_network(weights)
    base = loaded.model.state_dict()
    theta = perturbed(base)
    tiles = torch.rand(1, 3, tile, tile)
    click.echo(f"network {loaded.descriptor.num_block} blocks, tile 1x3x{tile}x{tile}, {threads} thread(s), median of {repeats}")

    start = time.perf_counter()
    onnx_path: Path = cached_onnx(loaded.model)
    click.echo(f"onnx export (or cache hit): {time.perf_counter() - start:.2f} s")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    plain = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    plain.run(None, {"input": tiles.numpy()})
    click.echo(f"ORT all optimisations, fixed weights: run {median_seconds(lambda: plain.run(None, {'input': tiles.numpy()}), repeats):.3f} s")
    for replacement in REPLACEMENTS:
        engine = OrtEngine(onnx_path, base, replacement=replacement, threads=threads)
        swap = median_seconds(lambda: engine.set_weights(theta), repeats)
        first = median_seconds(lambda: (engine.set_weights(theta), engine.run(tiles)), repeats) - swap
        steady = median_seconds(lambda: engine.run(tiles), repeats)
        click.echo(f"ORT {replacement}: set_weights {swap:.3f} s, first run after it {first:.3f} s, steady run {steady:.3f} s")

    eager = TorchEngine(loaded.model)
    eager.run(tiles)
    click.echo(f"torch eager: set_weights {median_seconds(lambda: eager.set_weights(theta), repeats):.3f} s, run {median_seconds(lambda: eager.run(tiles), repeats):.3f} s")

    if aoti:
        start = time.perf_counter()
        engine = load_aoti_engine(loaded.model)
        click.echo(f"AOTInductor compile (or cache hit) + load: {time.perf_counter() - start:.1f} s")
        engine.run(tiles)
        swap = median_seconds(lambda: engine.set_weights(theta), repeats)
        click.echo(f"AOTInductor: set_weights (load_constants) {swap:.3f} s, run {median_seconds(lambda: engine.run(tiles), repeats):.3f} s")


if __name__ == "__main__":
    main()
