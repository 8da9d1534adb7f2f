"""f2n-adapt-and-run: super-resolve photos x4 with an SR network adapted to each photo, from
its faces (MetaF2N) or from its own LR patches (CMDSR, when the checkpoint has a ConditionNet).

Exit codes: 0 every photo written (or skipped because its output exists), 1 some photos
failed, 2 every photo failed, 7 --demo's adaptation did not beat the base network, 130 interrupted
(Ctrl-C), 143 terminated (SIGTERM); an error before any photo is
processed (options, weights, engine) exits with that error's code (ConfigError 5,
WeightsError 3, EngineUnavailableError 4, InputImageError 2). Errors are one line on
stderr, never a traceback.
"""

import sys
import time
from pathlib import Path

import click

from f2n.command import Command
from f2n.console import EXIT_INTERRUPTED, EXIT_TERMINATED, Stopped, Terminated
from f2n.errors import ConfigError, EngineUnavailableError, F2NError, breaks_the_device
from f2n.runtime.build import load_supported_network, resolve_device
from f2n.runtime.engine_choice import EngineChoice
from f2n.runtime.images import DecodedImage, read_image
from f2n.runtime.jobs import Job, collect_inputs, plan_jobs, prepare_folders
from f2n.runtime.options import PipelineOptions, click_options, pipeline_from_options
from f2n.runtime.pipeline import AdaptAndRun
from f2n.runtime.report import RunReport, summarise, write_report_json

EXIT_PARTIAL, EXIT_ALL_FAILED = 1, 2
__all__ = ["EXIT_INTERRUPTED", "EXIT_TERMINATED", "Terminated", "main", "run"]  # the codes, for f2n-batch and tests


@click.command(cls=Command, stop_note="stopped before any photo was processed: nothing was written",
               context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("inputs", nargs=-1, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), help="Output file (one input) or folder [f2n_out].")
@click_options()
@click.option("--save-debug", is_flag=True, help="Write aligned/restored faces and patches beside the output.")
@click.option("--save-weights", type=click.Path(path_type=Path), help="Write θ_n (.safetensors file, or a folder for several photos).")
@click.option("--report", type=click.Path(path_type=Path), help="Write a JSON report of every photo.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs (default: skip them).")
@click.option("--demo", is_flag=True, help="Run the built-in demo (astronaut photo) and print PSNRs.")
@click.option("--progress/--no-progress", default=True, help="Progress bar over tiles.")
def command(inputs: tuple[Path, ...], **options: object) -> None:
    """Super-resolve PHOTO_OR_DIR... x4, adapting the SR network to each photo (faces or CMDSR)."""
    if options["demo"]:
        check_demo_options(click.get_current_context(), inputs)
    sys.exit(run(inputs, PipelineOptions.take(options), **options))  # errors and stops end in f2n.command.Command


main = command  # the console script's entry point

# What --demo honours: it brings its own photo, priors, engine and outputs.
DEMO_OPTIONS = frozenset({"demo", "device", "checkpoint", "sr_range", "steps", "lr", "optimizer", "no_guard",
                          "patches_per_face", "patches_per_image"})


def check_demo_options(ctx: click.Context, inputs: tuple[Path, ...]) -> None:
    """--demo refuses what it would ignore, rather than run without it."""
    given = [param.opts[0] for param in ctx.command.params if isinstance(param, click.Option)
             and param.name not in DEMO_OPTIONS
             and ctx.get_parameter_source(param.name) not in (None, click.core.ParameterSource.DEFAULT)]
    if inputs:
        given.insert(0, "a photo")
    if given:
        raise ConfigError(f"--demo runs on its own photo with its own priors and engine; it does not take "
                          f"{', '.join(given)}: leave them out (it takes --device, --checkpoint, --sr-range, --steps, "
                          "--lr, --optimizer, --no-guard, --patches-per-face, --patches-per-image)")


def run(inputs: tuple[Path, ...], options: PipelineOptions, *, out: Path | None, save_debug: bool,
        save_weights: Path | None, report: Path | None, overwrite: bool, demo: bool, progress: bool) -> int:
    if demo:
        from f2n.runtime.demo import run_demo

        return run_demo(device=resolve_device(options.device), checkpoint=options.checkpoint,
                        requested=options.requested(), sr_range=options.sr_range)
    if options.no_adapt and save_weights:
        raise ConfigError("--no-adapt and --save-weights (there is no θ_n to save) contradict each other: "
                          "give at most one")
    jobs = plan_jobs(collect_inputs(inputs), out, save_weights, save_debug)
    if options.oracle and len(jobs) != 1:
        raise ConfigError(f"--prior {options.prior.partition(':')[0]}:GT_PATH needs exactly one input photo, "
                          f"got {len(jobs)}")
    # a network f2n cannot run fails here, before any folder is made
    loaded = load_supported_network(options.checkpoint, value_range=options.sr_range)
    prepare_folders(jobs, report, started=time.time())
    # The oracle checks its ground truth against the photo's size: that photo is decoded once, here.
    decoded = {jobs[0].source: read_image(jobs[0].source)} if options.oracle else {}
    pipeline = pipeline_from_options(
        options, network=loaded, oracle_shape=decoded[jobs[0].source].rgb.shape[:2] if options.oracle else None,
        warn=lambda message: click.echo(f"warning: {message}", err=True), progress=progress)
    choice = pipeline.engine_choice
    reports: list[RunReport] = []
    for job in jobs:
        written: list[Path] = []
        try:
            reports.append(process(pipeline, job, overwrite, decoded.get(job.source), written))
        except (KeyboardInterrupt, Terminated) as stop:
            written_report = "" if report is None else f"; {stopped_report(report, reports, choice)}"
            raise Stopped(stop, stopped_at(job, written, reports) + written_report) from None
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


def stopped_at(job: Job, written: list[Path], reports: list[RunReport]) -> str:
    """Exactly what a stop during ``job`` leaves: every write is atomic, so a file is either
    complete or absent; θ′ is written before the image, the debug folder after it."""
    wanted = [path for path in (job.weights_out, job.output, job.debug_dir) if path is not None]
    missing = [path for path in wanted if path not in written]
    done = sum(r.status == "ok" for r in reports)
    parts = [f"{done} earlier photo(s) written; in progress {job.source}:"]
    parts.append(f"written {', '.join(map(str, written))};" if written else "nothing of it written;")
    parts.append(f"not written {', '.join(map(str, missing))}")
    if job.debug_dir is not None and job.debug_dir in missing and job.debug_dir.exists():
        parts.append("(the debug folder is incomplete)")
    return " ".join(parts)


def stopped_report(report: Path, reports: list[RunReport], choice: EngineChoice | None) -> str:
    """Write ``--report`` for the photos finished before a stop; says whether it was written."""
    try:
        write_report_json(report, reports, engine=choice.to_dict() if choice is not None else None)
    except OSError as error:
        return f"--report {report} not written ({error.strerror or error})"
    return f"--report {report} written with the {len(reports)} photo(s) finished before the stop"


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
        if breaks_the_device(error):  # every later photo would fail the same way
            raise EngineUnavailableError(f"{job.source} failed with '{first_line}': the CUDA context is broken, "
                                         "so the run stops here (photos written before it are complete)") from None
        reason = f"unexpected {type(error).__name__}: {first_line}"
        click.echo(f"failed {job.source}: {reason}", err=True)
        return RunReport(str(job.source), None, "failed", False, reason=reason)
    how = f"adapted with {report.method}" if report.adapted else f"base network: {report.reason}"
    click.echo(f"ok {job.source} -> {job.output} ({how}; {report.timings.get('total', 0):.1f} s)", err=True)
    return report
