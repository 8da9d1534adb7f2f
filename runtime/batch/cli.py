"""f2n-batch: f2n-adapt-and-run's per-photo pipeline over a whole collection, on Ray.

Each Ray worker builds the pipeline once and takes photos one at a time; the driver keeps
a manifest (``OUT/manifest.jsonl``) so that a photo is written once, a re-run skips what
is finished and retries what failed, and a killed run resumes where it stopped.

Exit codes as f2n-adapt-and-run: 0 every photo written (now or before), 1 some failed,
2 all failed, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM); an error before any photo runs exits
with its code (ConfigError 5, EngineUnavailableError 4 when Ray is not installed, …).
"""

import signal
import sys
import time
from pathlib import Path
from types import FrameType

import click

from f2n.errors import ConfigError, F2NError
from f2n.nets.rrdbnet import VALUE_RANGES
from f2n.runtime.adapt import DEFAULT_LR, DEFAULT_OPTIMIZER, DEFAULT_STEPS
from f2n.runtime.batch.build import PipelineOptions
from f2n.runtime.batch.inputs import plan_photos
from f2n.runtime.batch.manifest import Manifest
from f2n.runtime.batch.run import ClusterOptions, import_ray, run_batch
from f2n.runtime.build import DEFAULT_PATCHES_PER_IMAGE
from f2n.runtime.cli import EXIT_ALL_FAILED, EXIT_INTERRUPTED, EXIT_PARTIAL, EXIT_TERMINATED, Command, Terminated
from f2n.runtime.jobs import DEFAULT_OUT_DIR, prepare_folders
from f2n.runtime.report import summarise, write_report_json

DEFAULTS = PipelineOptions()
MANIFEST_NAME = "manifest.jsonl"
ATTEMPTS_DIR_NAME = ".f2n-batch-attempts"  # the workers' attempt counts, beside the outputs, during a run


@click.command(cls=Command, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("inputs", nargs=-1)
@click.option("--out", type=click.Path(path_type=Path), default=DEFAULT_OUT_DIR, show_default=True,
              help="Output folder (OUT/<stem>.png, as f2n-adapt-and-run).")
@click.option("--manifest", type=click.Path(path_type=Path), help="One JSON line per photo [OUT/manifest.jsonl].")
@click.option("--report", type=click.Path(path_type=Path), help="Also write f2n-adapt-and-run's JSON report.")
@click.option("--address", help="Ray cluster to join (ray://HOST:10001, HOST:6379 or auto) [start Ray here].")
@click.option("--workers", type=click.IntRange(min=1), help="Workers [as many as the CPUs/GPUs allow].")
@click.option("--cpus-per-worker", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--gpus-per-worker", type=click.FloatRange(min=0), help="[1 on CUDA, else 0]")
@click.option("--attempts", type=click.IntRange(min=1), default=3, show_default=True,
              help="Tries of a photo whose worker dies under it (a photo that fails is not retried in the run).")
@click.option("--checkpoint", default=DEFAULTS.checkpoint, show_default=True, help="Registry name or weight file.")
@click.option("--sr-range", type=click.Choice(VALUE_RANGES), help="As f2n-adapt-and-run's: the SR weights' value range.")
@click.option("--engine", type=click.Choice(["auto", "torch", "onnx", "trt", "aoti", "openvino", "ncnn"]), default=DEFAULTS.engine,
              show_default=True, help="As f2n-adapt-and-run's (auto: the fastest safe engine on each worker).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), help="[cuda if the workers have it, else cpu]")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16"]),
              help="[auto: the engine rule's; else fp16 on cuda, fp32 on cpu]")
@click.option("--steps", type=int, help=f"Adaptation steps n [checkpoint's, else {DEFAULT_STEPS}].")
@click.option("--lr", type=float, help=f"Adaptation learning rate α [checkpoint's, else {DEFAULT_LR}].")
@click.option("--optimizer", type=click.Choice(["sgd", "adam"]), help=f"[checkpoint's, else {DEFAULT_OPTIMIZER}]")
@click.option("--no-guard", is_flag=True, help="Keep θ′ even when the held-out face pairs' loss did not improve.")
@click.option("--adapt-method", type=click.Choice(["auto", "faces", "cmdsr", "redegnet"]), default=DEFAULTS.adapt_method,
              show_default=True)
@click.option("--natural-bank", help="ReDegNet: a folder of HQ natural images (every worker reads it).")
@click.option("--natural-pairs", type=int, default=DEFAULTS.natural_pairs, show_default=True,
              help="ReDegNet: synthetic natural pairs per photo.")
@click.option("--redegnet-weights", help="ReDegNet: a folder with its networks (every worker reads it) [weight cache].")
@click.option("--prior", default=DEFAULTS.prior, show_default=True,
              help="As f2n-adapt-and-run's (a name, a face-restorer file, module:callable), not oracle:.")
@click.option("--prior-option", "prior_options", multiple=True, metavar="NAME=VALUE",
              help="A prior's option, repeatable (w=0.7: CodeFormer's fidelity).")
@click.option("--patches-per-face", type=int, help="Face patch pairs per face, instead of a budget per photo [checkpoint's].")
@click.option("--patches-per-image", type=int,
              help=f"Face patch pairs per photo, spread over its faces [checkpoint's, else {DEFAULT_PATCHES_PER_IMAGE}].")
@click.option("--support-patch", type=int, default=DEFAULTS.support_patch, show_default=True)
@click.option("--support-count", type=int, default=DEFAULTS.support_count, show_default=True)
@click.option("--tile", type=int, default=DEFAULTS.tile, show_default=True, help="Tile size, LR pixels.")
@click.option("--tile-overlap", type=int, default=DEFAULTS.tile_overlap, show_default=True, help="LR pixels.")
@click.option("--paste-faces", is_flag=True, help="Blend the restored faces over the result.")
@click.option("--no-adapt", is_flag=True, help="Run the base network only.")
@click.option("--require-adaptation", is_flag=True, help="Fail a photo that cannot be adapted.")
def command(inputs: tuple[str, ...], out: Path, manifest: Path | None, report: Path | None, address: str | None,
            workers: int | None, cpus_per_worker: int, gpus_per_worker: float | None, attempts: int,
            **pipeline: object) -> None:
    """Super-resolve every photo of INPUTS (folders, globs, photos, URIs, .txt lists of them) x4 on Ray."""
    try:
        files = {name: _absolute_if_file(str(pipeline[name])) for name in ("checkpoint", "prior")}
        for folder in ("natural_bank", "redegnet_weights"):
            if pipeline[folder] is not None:
                files[folder] = str(Path(str(pipeline[folder])).resolve())
        options = PipelineOptions(**{**pipeline, **files})
        cluster = ClusterOptions(address, workers, cpus_per_worker, gpus_per_worker, attempts)
        code = run(inputs, out, manifest or out / MANIFEST_NAME, report, options, cluster)
    except F2NError as error:  # one line and the error's exit code, never a traceback
        click.echo(f"error: {error}", err=True)
        code = error.exit_code
    except KeyboardInterrupt:  # the manifest holds every photo finished so far
        click.echo("interrupted: finished photos are in the manifest; run again to resume", err=True)
        code = EXIT_INTERRUPTED
    except Terminated:
        click.echo("terminated (SIGTERM): finished photos are in the manifest; run again to resume", err=True)
        code = EXIT_TERMINATED
    sys.exit(code)


def main() -> None:
    """The console script: a scheduler's SIGTERM ends the run like f2n-adapt-and-run's (Ray shut
    down, exit 143)."""
    signal.signal(signal.SIGTERM, _terminate)
    command()


def run(inputs: tuple[str, ...], out: Path, manifest_path: Path, report: Path | None, options: PipelineOptions,
        cluster: ClusterOptions) -> int:
    photos = plan_photos(inputs, out)
    import_ray()  # before anything is written
    prepare_folders([], report, started=time.time())
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"cannot create output folder {out}: {error.strerror or error}") from None
    with Manifest(manifest_path, options.digest()) as manifest:
        run_batch(photos, manifest, options, cluster, attempts_dir=out / ATTEMPTS_DIR_NAME,
                  echo=lambda text: click.echo(text, err=True))
        reports = manifest.reports([photo.source for photo in photos])
    if report is not None:
        write_report_json(report, reports)
    counts = summarise(reports)
    unfinished = len(photos) - len(reports)  # no line yet: Ray gave up on them; the next run does them
    click.echo(f"{len(photos)} photo(s): {counts['ok']} written ({counts['adapted']} adapted), "
               f"{counts['failed']} failed" + (f", {unfinished} not finished" if unfinished else ""), err=True)
    if counts["ok"] == len(photos):
        return 0
    return EXIT_ALL_FAILED if counts["ok"] == 0 else EXIT_PARTIAL


def _absolute_if_file(name_or_path: str) -> str:
    """A weight file by its absolute path: workers do not share the driver's working folder."""
    return str(Path(name_or_path).resolve()) if Path(name_or_path).is_file() else name_or_path


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated
