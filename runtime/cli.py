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
from f2n.runtime.build import load_supported_network, resolve_device
from f2n.runtime.images import DecodedImage, read_image
from f2n.runtime.jobs import Job, collect_inputs, plan_jobs, prepare_folders
from f2n.runtime.options import PipelineOptions, click_options, pipeline_from_options
from f2n.runtime.pipeline import AdaptAndRun
from f2n.runtime.report import RunReport, summarise, write_report_json

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
@click_options()
@click.option("--save-debug", is_flag=True, help="Write aligned/restored faces and patches beside the output.")
@click.option("--save-weights", type=click.Path(path_type=Path), help="Write θ_n (.safetensors file, or a folder for several photos).")
@click.option("--report", type=click.Path(path_type=Path), help="Write a JSON report of every photo.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs (default: skip them).")
@click.option("--demo", is_flag=True, help="Run the built-in demo (astronaut photo) and print PSNRs.")
@click.option("--progress/--no-progress", default=True, help="Progress bar over tiles.")
def command(inputs: tuple[Path, ...], **options: object) -> None:
    """Super-resolve PHOTO_OR_DIR... x4, adapting the SR network to each photo (faces or CMDSR)."""
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        code = run(inputs, PipelineOptions.take(options), **options)
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
