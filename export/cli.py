"""``f2n-export``: write the SR network (base weights, a checkpoint or an adapted
weight set) as ONNX, an AOTInductor package, a refittable TensorRT plan or a safetensors
file that spandrel loads as ESRGAN (ComfyUI, chaiNNer), and print how closely it reproduces
PyTorch on a real image crop."""

import os
import tempfile
from pathlib import Path

import click
import numpy as np
import torch
from skimage import data

from f2n.command import Command
from f2n.errors import ConfigError, EngineUnavailableError
from f2n.export.aoti import AotiEngine, compile_package
from f2n.export.fp32_mode import ieee_fp32
from f2n.export.onnx_export import (
    FP32_TOLERANCE,
    VerificationError,
    export_onnx,
    verify_onnx,
)
from f2n.export.protocol import SREngine
from f2n.export.spandrel_export import check_spandrel_compatible, spandrel_difference, write_spandrel
from f2n.export.trt_config import tile_profile
from f2n.export.trt_engine import TrtEngine, build_plan, import_tensorrt, parser_graph, recipe_for
from f2n.export.trt_refit import read_refit_source
from f2n.fileio import write_bytes_atomic
from f2n.nets.rrdbnet import VALUE_RANGES, ValueRange
from f2n.weights.sr import LoadedSR, load_sr_network

SUFFIXES = {"onnx": ".onnx", "aoti": ".pt2", "trt": ".plan", "spandrel": ".safetensors"}
CROP = (slice(40, 104), slice(180, 244))  # 64 x 64 LR px around the astronaut's face
TRT_TILE = 192  # the tiler's default tile, LR px


def verification_crop() -> torch.Tensor:
    """A real photo crop (scikit-image's astronaut) as (1, 3, 64, 64) float32 in [0, 1]."""
    rgb = data.astronaut()[CROP].astype(np.float32) / 255.0
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].contiguous()


def _check(diff: float, precision: str, what: str) -> None:
    """``precision`` "fp32" is held to FP32_TOLERANCE; fp16/bf16 and fp32 with TF32 ("tf32") are reported only."""
    click.echo(f"verification: max abs difference {what} vs PyTorch fp32 (IEEE) on a 64x64 real crop = {diff:.3g}")
    if precision == "fp32" and diff > FP32_TOLERANCE:
        raise VerificationError(f"{what} differs from PyTorch by {diff:.3g}, expected <= {FP32_TOLERANCE:g} in fp32")


@click.command(cls=Command)
@click.option("--weights", "source", default="realesrgan-x4plus", show_default=True, help="registry name or weight file (.pth/.safetensors, checkpoint or adapted set)")
@click.option("--format", "fmt", type=click.Choice(list(SUFFIXES)), default="onnx", show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16"]), default="fp32", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="default: <weights name>-<precision><suffix> here")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True, help="AOTInductor target; TensorRT needs cuda")
@click.option("--verify/--no-verify", default=True, show_default=True, help="run the export on a real crop and compare with PyTorch")
@click.option("--tf32", is_flag=True, help="TensorRT fp32: allow TF32 (faster on Ampere+, ~1e-3 from IEEE fp32; verified loosely)")
@click.option("--sr-range", type=click.Choice(VALUE_RANGES), help="the value range the weights were trained on "
              "[the file's record, else the registry's; a file named F2NESRGAN.pth: signed; else unit]")
def main(source: str, fmt: str, precision: str, out: Path | None, device: str, verify: bool, tf32: bool,
         sr_range: ValueRange | None) -> None:
    """Export the x4 SR network for an inference engine (input and output in [0, 1] whatever
    range the weights were trained on: the graph maps in and out)."""
    click.echo(f"wrote {export(source, fmt, precision, out, device, verify, tf32=tf32, sr_range=sr_range)}")


def export(source: str, fmt: str, precision: str, out: Path | None, device: str, verify: bool, *, tf32: bool = False,
           sr_range: ValueRange | None = None) -> Path:
    if tf32 and (fmt != "trt" or precision != "fp32"):
        raise ConfigError(f"--tf32 applies to --format trt --precision fp32 only, got --format {fmt} --precision {precision}")
    if fmt == "spandrel" and precision != "fp32":
        raise ConfigError(f"--format spandrel writes fp32 weights (ComfyUI and chaiNNer cast them), got --precision {precision}")
    if fmt == "trt":
        trt = import_tensorrt()  # fail before any work when TensorRT or CUDA is missing
    out = output_path(out, source, fmt, precision)
    loaded = load_sr_network(source, value_range=sr_range)
    if fmt == "spandrel":
        check_spandrel_compatible(loaded)  # before any file is written
    # Written and verified under a temp name beside --out, then renamed: an export that fails
    # its check leaves no file, and an existing --out stays as it was.
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as folder:
            staged = Path(folder) / out.name
            if fmt == "spandrel":
                _export_spandrel(staged, loaded, source, verify)
            else:
                _export_to(staged, fmt, loaded.model, precision, device, verify, trt if fmt == "trt" else None, tf32)
            os.replace(staged, out)
    except OSError as error:  # read-only folder, full disk: one line, not a traceback
        raise ConfigError(f"cannot write {out}: {error.strerror or error}") from None
    click.echo(f"value range: {loaded.value_range}")  # what the graph maps its [0, 1] input to
    return out


def output_path(out: Path | None, source: str, fmt: str, precision: str) -> Path:
    """``--out``, or ``<weights name>-<precision><suffix>`` here; the suffix must be the format's,
    because engines and other tools pick the loader from it (an ONNX file named .pt2 loads as nothing)."""
    suffix = SUFFIXES[fmt]
    if out is None:
        return Path(f"{Path(source).stem}-{precision}{suffix}")
    if out.suffix.lower() != suffix:
        raise ConfigError(f"--out {out} must end in {suffix} for --format {fmt}, got {out.suffix or 'no suffix'!r}")
    return out


def _export_to(path: Path, fmt: str, model: torch.nn.Module, precision: str, device: str, verify: bool, trt, tf32: bool) -> None:
    if fmt == "onnx":
        export_onnx(model, path, precision=precision)
        if verify:
            _check(verify_onnx(path, model, verification_crop()), precision, "ONNX Runtime")
    elif fmt == "aoti":
        compile_package(model, path, device=device, precision=precision)
        if verify:
            engine = AotiEngine(path, model.state_dict(), device=device, precision=precision)
            _check(_engine_difference(engine, model), precision, "AOTInductor")
    else:
        if device != "cuda":
            raise EngineUnavailableError("--format trt needs --device cuda")
        _export_trt(trt, model, path, precision, verify, tf32)


def _export_spandrel(path: Path, loaded: LoadedSR, source: str, verify: bool) -> None:
    write_spandrel(loaded, path, source)
    if verify:
        with ieee_fp32():
            _check(spandrel_difference(path, loaded.model, verification_crop()), "fp32", "spandrel")


def _export_trt(trt, model: torch.nn.Module, out: Path, precision: str, verify: bool, tf32: bool) -> None:
    recipe = recipe_for(trt, precision, tf32=tf32)  # validate before exporting
    profile = tile_profile(TRT_TILE)
    weights = model.state_dict()
    # The ONNX graph is an intermediate here: a temp file, gone on success and failure
    # (a side file next to --out could overwrite the user's own .onnx).
    with tempfile.TemporaryDirectory(prefix="f2n-export-") as folder:
        onnx_path = export_onnx(model, Path(folder) / "rrdbnet.onnx")
        plan = build_plan(trt, parser_graph(onnx_path, recipe), recipe, profile)
        refit_source = read_refit_source(onnx_path, weights.keys())
    write_bytes_atomic(out, plan)
    if verify:
        engine = TrtEngine(plan, refit_source, weights, precision=precision, profile=profile)
        _check(_engine_difference(engine, model), "tf32" if tf32 else precision, "TensorRT")


def _engine_difference(engine: SREngine, model: torch.nn.Module) -> float:
    """Max abs difference between ``engine`` and fp32 PyTorch on the verification crop."""
    crop = verification_crop()
    with ieee_fp32(), torch.inference_mode():  # TF32 would be ~1e-3 off on Ampere+ GPUs
        want = model(crop)
        got = engine.run(crop)
    return float((got - want).abs().max())
