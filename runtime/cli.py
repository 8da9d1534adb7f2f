"""f2n-adapt-and-run: super-resolve photos x4 with an SR network adapted to each photo, from
its faces (MetaF2N) or from its own LR patches (CMDSR, when the checkpoint has a ConditionNet).

Exit codes: 0 every photo written (or skipped because its output exists), 1 some photos
failed, 2 every photo failed, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM); an error before any photo is
processed (options, weights, engine) exits with that error's code (ConfigError 5,
WeightsError 3, EngineUnavailableError 4, InputImageError 2). Errors are one line on
stderr, never a traceback.
"""

import signal
import sys
import time
from pathlib import Path

import click

from f2n.errors import ConfigError, F2NError
from f2n.nets.rrdbnet import VALUE_RANGES, ValueRange
from f2n.runtime.adapt import DEFAULT_LR, DEFAULT_OPTIMIZER, DEFAULT_STEPS
from f2n.runtime.build import (
    DEFAULT_PATCHES_PER_IMAGE,
    build_pipeline,
    load_supported_network,
    patch_config,
    resolve_device,
)
from f2n.runtime.face_prior import parse_prior_options
from f2n.runtime.images import DecodedImage, read_image
from f2n.runtime.jobs import Job, collect_inputs, plan_jobs, prepare_folders
from f2n.runtime.pipeline import AdaptAndRun, check_adapt_steps
from f2n.runtime.redegnet import ReDegNetConfig
from f2n.runtime.report import RunReport, summarise, write_report_json
from f2n.runtime.support import SupportConfig
from f2n.runtime.tiling import DEFAULT_BATCH_SIZE, DEFAULT_OVERLAP, DEFAULT_TILE, check_tiling

EXIT_PARTIAL, EXIT_ALL_FAILED = 1, 2
EXIT_INTERRUPTED = 130  # the shell's code for a process ended by SIGINT
EXIT_TERMINATED = 143  # the shell's code for a process ended by SIGTERM


class Terminated(BaseException):
    """SIGTERM (a service manager, a batch scheduler) arrived: stop like Ctrl-C. A BaseException,
    as KeyboardInterrupt is, so that no per-photo ``except Exception`` goes on past it."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


class OptionError(click.ClickException):
    """An option click itself rejects (``--tile abc``): one line and ConfigError's exit
    code, like every other error, instead of click's usage text and exit code 2 (which
    here means that every photo failed)."""

    exit_code = ConfigError.exit_code

    def show(self, file: object = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class Command(click.Command):
    """click's command, its usage errors raised as ``OptionError``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as error:
            raise OptionError(error.format_message()) from None


@click.command(cls=Command, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("inputs", nargs=-1, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), help="Output file (one input) or folder [f2n_out].")
@click.option("--engine", type=click.Choice(["auto", "torch", "onnx", "trt", "aoti", "openvino", "ncnn"]), default="auto",
              show_default=True, help="auto: the fastest safe engine here (OpenVINO bf16/fp32 on the CPU, TensorRT or "
                                      "compiled torch on CUDA; docs/benchmarks.md); the report names the choice.")
@click.option("--steps", type=int, help=f"Adaptation steps n [checkpoint's, else {DEFAULT_STEPS}].")
@click.option("--lr", type=float, help=f"Adaptation learning rate α [checkpoint's, else {DEFAULT_LR}].")
@click.option("--optimizer", type=click.Choice(["sgd", "adam"]), help=f"[checkpoint's, else {DEFAULT_OPTIMIZER}]")
@click.option("--no-guard", is_flag=True, help="Keep θ′ even when the held-out face pairs' loss did not improve "
              "(by default the base weights are used then, and the report says so).")
@click.option("--adapt-method", type=click.Choice(["auto", "faces", "cmdsr", "redegnet"]), default="auto", show_default=True,
              help="faces: MetaF2N; cmdsr: ConditionNet on the photo's LR patches; redegnet: the faces' degradation "
                   "rendered onto --natural-bank images (ReDegNet); auto: cmdsr when the checkpoint has a ConditionNet.")
@click.option("--natural-bank", type=click.Path(path_type=Path), help="ReDegNet: a folder of HQ natural images.")
@click.option("--natural-pairs", type=int, default=ReDegNetConfig().natural_pairs, show_default=True,
              help="ReDegNet: synthetic natural pairs per photo.")
@click.option("--redegnet-weights", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="ReDegNet: a folder with its networks, the released net_*_init.pth files or an f2n-train run "
                   "[the weight cache: f2n-models add].")
@click.option("--patches-per-face", type=int, help="Face patch pairs per face, instead of a budget per photo [checkpoint's].")
@click.option("--patches-per-image", type=int, help="Face patch pairs per photo, spread over its faces by area "
              f"(instead of --patches-per-face) [checkpoint's, else {DEFAULT_PATCHES_PER_IMAGE}].")
@click.option("--support-patch", type=int, default=SupportConfig().patch, show_default=True, help="CMDSR support patch side, LR pixels.")
@click.option("--support-count", type=int, default=SupportConfig().count, show_default=True, help="CMDSR support patches per photo.")
@click.option("--tile", type=int, default=DEFAULT_TILE, show_default=True, help="Tile size, LR pixels.")
@click.option("--tile-overlap", type=int, default=DEFAULT_OVERLAP, show_default=True, help="LR pixels.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), help="[cuda if available, else cpu]")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16"]),
              help="Engine precision [auto: the engine rule's; else fp16 on cuda, fp32 on cpu].")
@click.option("--prior", default="gpen", show_default=True,
              help="gpen | gpen-256 | gfpgan | codeformer | restoreformer | a .pth/.safetensors/.onnx face restorer "
                   "| oracle:GT_PATH | module:callable. GPEN and CodeFormer weights: non-commercial use only.")
@click.option("--prior-option", "prior_options", multiple=True, metavar="NAME=VALUE",
              help="A prior's option, repeatable: w=0.7 sets CodeFormer's fidelity (default 0.5).")
@click.option("--checkpoint", default="realesrgan-x4plus", show_default=True, help="Registry name or weight file.")
@click.option("--sr-range", type=click.Choice(VALUE_RANGES), help="The value range the SR weights were trained on "
              "[the file's record, else the registry's; a file named F2NESRGAN.pth: signed; else unit].")
@click.option("--paste-faces", is_flag=True, help="Blend the restored faces over the result.")
@click.option("--save-debug", is_flag=True, help="Write aligned/restored faces and patches beside the output.")
@click.option("--save-weights", type=click.Path(path_type=Path), help="Write θ_n (.safetensors file, or a folder for several photos).")
@click.option("--report", type=click.Path(path_type=Path), help="Write a JSON report of every photo.")
@click.option("--no-adapt", is_flag=True, help="Run the base network only.")
@click.option("--require-adaptation", is_flag=True, help="Fail a photo that cannot be adapted.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs (default: skip them).")
@click.option("--demo", is_flag=True, help="Run the built-in demo (astronaut photo) and print PSNRs.")
@click.option("--progress/--no-progress", default=True, help="Progress bar over tiles.")
def command(inputs: tuple[Path, ...], **options: object) -> None:
    """Super-resolve PHOTO_OR_DIR... x4, adapting the SR network to each photo (faces or CMDSR)."""
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        code = run(inputs, **options)
    except F2NError as error:  # one line and the error's exit code, never a traceback
        click.echo(f"error: {error}", err=True)
        code = error.exit_code
    except Interrupted as interrupted:
        click.echo(f"interrupted: {interrupted}", err=True)
        code = EXIT_INTERRUPTED
    except KeyboardInterrupt:
        click.echo("interrupted before any photo was processed: nothing was written", err=True)
        code = EXIT_INTERRUPTED
    except Terminated:
        click.echo("terminated (SIGTERM): the photo in progress was not written", err=True)
        code = EXIT_TERMINATED
    finally:
        signal.signal(signal.SIGTERM, previous)
    sys.exit(code)


main = command  # the console script's entry point


def run(inputs: tuple[Path, ...], *, out: Path | None, engine: str, steps: int | None, lr: float | None,
        optimizer: str | None, no_guard: bool, adapt_method: str, natural_bank: Path | None, natural_pairs: int,
        redegnet_weights: Path | None,
        patches_per_face: int | None, patches_per_image: int | None, support_patch: int, support_count: int,
        tile: int, tile_overlap: int, device: str | None, precision: str | None, prior: str,
        prior_options: tuple[str, ...], checkpoint: str, sr_range: ValueRange | None,
        paste_faces: bool, save_debug: bool, save_weights: Path | None, report: Path | None, no_adapt: bool,
        require_adaptation: bool, overwrite: bool, demo: bool, progress: bool) -> int:
    requested = {"steps": steps, "lr": lr, "optimizer": optimizer, "guard": False if no_guard else None,
                 "patches_per_face": patches_per_face, "patches_per_image": patches_per_image}
    if demo:
        from f2n.runtime.demo import run_demo

        return run_demo(device=resolve_device(device), checkpoint=checkpoint, requested=requested, sr_range=sr_range)
    if steps is not None:
        check_adapt_steps(steps)  # before AdaptConfig, whose own bound (>= 0) serves other callers
    if no_adapt and (require_adaptation or save_weights):
        other = "--require-adaptation" if require_adaptation else "--save-weights (there is no θ_n to save)"
        raise ConfigError(f"--no-adapt and {other} contradict each other: give at most one")
    jobs = plan_jobs(collect_inputs(inputs), out, save_weights, save_debug)
    # Options checked before any work (and before the weights load).
    check_tiling(tile, tile_overlap, DEFAULT_BATCH_SIZE)
    patch_config(patches_per_face, patches_per_image, None)
    parsed_prior_options = parse_prior_options(prior_options)
    support = SupportConfig(patch=support_patch, count=support_count)
    oracle = prior.startswith(("oracle:", "oracle-restored:")) and not no_adapt and adapt_method != "cmdsr"
    if oracle and len(jobs) != 1:
        raise ConfigError(f"--prior oracle:GT_PATH needs exactly one input photo, got {len(jobs)}")
    loaded = load_supported_network(checkpoint, value_range=sr_range)  # a network f2n cannot run fails here, before any folder is made
    prepare_folders(jobs, report, started=time.time())
    # The oracle checks its ground truth against the photo's size: that photo is decoded once, here.
    decoded = {jobs[0].source: read_image(jobs[0].source)} if oracle else {}
    pipeline = build_pipeline(
        loaded, engine=engine, device=device, precision=precision, requested=requested, method=adapt_method,
        prior=prior, prior_options=parsed_prior_options, support=support,
        natural_bank=natural_bank, natural_pairs=natural_pairs, redegnet_weights=redegnet_weights,
        oracle_shape=decoded[jobs[0].source].rgb.shape[:2] if oracle else None,
        warn=lambda message: click.echo(f"warning: {message}", err=True),
        tile=tile, overlap=tile_overlap, adapt_enabled=not no_adapt, require_adaptation=require_adaptation,
        paste_faces=paste_faces, progress=progress)
    choice = pipeline.engine_choice
    reports: list[RunReport] = []
    for job in jobs:
        written: list[Path] = []
        try:
            reports.append(process(pipeline, job, overwrite, decoded.get(job.source), written))
        except KeyboardInterrupt:
            raise Interrupted(interrupted_at(job, written, reports, report)) from None
    if report is not None:
        try:
            write_report_json(report, reports, engine=choice.to_dict())
        except OSError as error:  # a full disk, a folder gone read-only: the photos are written already
            raise ConfigError(f"cannot write the report {report}: {error.strerror or error} "
                              f"(the {summarise(reports)['ok']} photo(s) written are complete)") from None
    counts = summarise(reports)
    click.echo(f"{len(reports)} photo(s): {counts['ok']} written ({counts['adapted']} adapted), "
               f"{counts['skipped']} skipped, {counts['failed']} failed; engine {choice.engine} {choice.precision} "
               f"({choice.reason}); SR value range {loaded.value_range}", err=True)
    if counts["failed"] == 0:
        return 0
    return EXIT_ALL_FAILED if counts["failed"] == len(reports) else EXIT_PARTIAL


class Interrupted(Exception):
    """Ctrl-C during the photos; the message says what was and was not written."""


def interrupted_at(job: Job, written: list[Path], reports: list[RunReport], report: Path | None) -> str:
    """Exactly what an interruption during ``job`` leaves: every write is atomic, so a file is
    either complete or absent; θ′ is written before the image, the debug folder after it."""
    wanted = [path for path in (job.weights_out, job.output, job.debug_dir) if path is not None]
    missing = [path for path in wanted if path not in written]
    done = sum(r.status == "ok" for r in reports)
    parts = [f"{done} earlier photo(s) written; in progress {job.source}:"]
    parts.append(f"written {', '.join(map(str, written))};" if written else "nothing of it written;")
    parts.append(f"not written {', '.join(map(str, missing))}")
    if job.debug_dir is not None and job.debug_dir in missing and job.debug_dir.exists():
        parts.append("(the debug folder is incomplete)")
    text = " ".join(parts)
    return text if report is None else f"{text}; --report {report} not written"


def process(pipeline: AdaptAndRun, job: Job, overwrite: bool, decoded: DecodedImage | None = None,
            written: list[Path] | None = None) -> RunReport:
    """One photo (``decoded``: already read); its failure is reported and does not stop the others.
    ``written`` receives each of its files once complete."""
    if job.output.exists() and not overwrite:
        click.echo(f"skipped {job.source}: {job.output} exists (use --overwrite)", err=True)
        return RunReport(str(job.source), str(job.output), "skipped", False, reason="output exists")
    try:
        report = pipeline(job.source, job.output, weights_out=job.weights_out, debug_dir=job.debug_dir,
                          decoded=decoded, seed=job.seed, written=written)
    except F2NError as error:
        click.echo(f"failed {job.source}: {error}", err=True)
        return RunReport(str(job.source), None, "failed", False, reason=str(error))
    except Exception as error:  # a folder run goes on past a photo that breaks in an unforeseen way
        first_line = next(iter(str(error).strip().splitlines()), "")
        reason = f"unexpected {type(error).__name__}: {first_line}"
        click.echo(f"failed {job.source}: {reason}", err=True)
        return RunReport(str(job.source), None, "failed", False, reason=reason)
    how = f"adapted with {report.method}" if report.adapted else f"base network: {report.reason}"
    click.echo(f"ok {job.source} -> {job.output} ({how}; {report.timings.get('total', 0):.1f} s)", err=True)
    return report
