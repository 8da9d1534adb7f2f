"""f2n-batch: f2n-adapt-and-run's per-photo pipeline over a whole collection, on Ray.

Each Ray worker builds the pipeline once and takes photos one at a time; the driver keeps
a manifest (``OUT/manifest.jsonl``) so that a photo is written once, a re-run skips what
is finished and retries what failed, and a killed run resumes where it stopped.

Exit codes as f2n-adapt-and-run: 0 every photo written (now or before), 1 some failed,
2 all failed, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM); an error before any photo runs exits
with its code (ConfigError 5, EngineUnavailableError 4 when Ray is not installed, …).
"""

import sys
import time
from dataclasses import replace
from pathlib import Path

import click

from f2n.command import Command
from f2n.console import Stopped, Terminated
from f2n.errors import ConfigError
from f2n.runtime.batch.inputs import plan_photos
from f2n.runtime.batch.manifest import Manifest
from f2n.runtime.batch.run import ClusterOptions, check_batch_options, import_ray, run_batch
from f2n.runtime.batch.storage import is_uri, join, location, make_folder
from f2n.runtime.cli import EXIT_ALL_FAILED, EXIT_PARTIAL, stopped_report
from f2n.runtime.jobs import DEFAULT_OUT_DIR, prepare_folders
from f2n.runtime.options import PipelineOptions, click_options
from f2n.runtime.report import summarise, write_report_json

MANIFEST_NAME = "manifest.jsonl"
ATTEMPTS_DIR_NAME = ".f2n-batch-attempts"  # the workers' attempt counts, beside the outputs, during a run


@click.command(cls=Command, stop_note="stopped before any photo was processed: nothing was written",
               context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("inputs", nargs=-1)
@click.option("--out", default=str(DEFAULT_OUT_DIR), show_default=True,
              help="Output folder or fsspec URI (OUT/<stem>.png, as f2n-adapt-and-run).")
@click.option("--manifest", type=click.Path(path_type=Path),
              help="One JSON line per photo, a local file [OUT/manifest.jsonl; required when OUT is a URI].")
@click.option("--report", type=click.Path(path_type=Path), help="Also write f2n-adapt-and-run's JSON report.")
@click.option("--address", help="Ray cluster to join (ray://HOST:10001, HOST:6379 or auto) [start Ray here].")
@click.option("--workers", type=click.IntRange(min=1), help="Workers [as many as the CPUs/GPUs allow].")
@click.option("--cpus-per-worker", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--gpus-per-worker", type=click.FloatRange(min=0), help="[1 on CUDA, else 0]")
@click.option("--attempts", type=click.IntRange(min=1), default=3, show_default=True,
              help="Tries of a photo whose worker dies under it (a photo that fails is not retried in the run).")
@click_options({"engine": {"help": "As f2n-adapt-and-run's (auto: the fastest safe engine on each worker)."},
                "device": {"help": "[cuda if the workers have it, else cpu]"},
                "prior": {"help": "As f2n-adapt-and-run's (a name, a face-restorer file, module:callable), not an "
                                  "oracle: each photo would need its own ground truth."}})
def command(inputs: tuple[str, ...], out: str, manifest: Path | None, report: Path | None, address: str | None,
            workers: int | None, cpus_per_worker: int, gpus_per_worker: float | None, attempts: int,
            **pipeline: object) -> None:
    """Super-resolve every photo of INPUTS (folders, globs, photos, URIs, .txt lists of them) x4 on Ray."""
    options = PipelineOptions.take(pipeline)
    check_batch_options(options)  # before any folder is made
    options = replace(options, **{name: _absolute(getattr(options, name), files_only=name in ("checkpoint", "prior"))
                                  for name in ("checkpoint", "prior", "natural_bank", "redegnet_weights")})
    cluster = ClusterOptions(address, workers, cpus_per_worker, gpus_per_worker, attempts)
    sys.exit(run(inputs, location(out), manifest, report, options, cluster))  # errors, stops: Command


main = command  # the console script's entry point; Command turns SIGTERM into a stop (Ray shut down, 143)


def run(inputs: tuple[str, ...], out: str, manifest_path: Path | None, report: Path | None, options: PipelineOptions,
        cluster: ClusterOptions) -> int:
    """``out``: an absolute folder or a URI (:func:`f2n.runtime.batch.storage.location`)."""
    if manifest_path is None:
        if is_uri(out):  # the driver appends, fsyncs and locks it: a URI cannot be
            raise ConfigError(f"--out {out} is a URI: give --manifest, a local file for the run's manifest")
        manifest_path = Path(out) / MANIFEST_NAME
    photos = plan_photos(inputs, out)
    import_ray()  # before anything is written
    prepare_folders([], report, started=time.time())
    make_folder(out)
    with Manifest(manifest_path, options.digest()) as manifest:
        try:
            run_batch(photos, manifest, options, cluster, attempts_dir=join(out, ATTEMPTS_DIR_NAME),
                      echo=lambda text: click.echo(text, err=True))
        except (KeyboardInterrupt, Terminated) as stop:  # Ray is shut down; the manifest has every finished photo
            manifest.reread()
            done = manifest.reports([photo.source for photo in photos])
            written = "" if report is None else f"; {stopped_report(report, done, None)}"
            finished = sum(r.status == "ok" for r in done)
            raise Stopped(stop, f"{finished} photo(s) written and recorded in {manifest_path}; "
                                f"run again to resume{written}") from None
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


def _absolute(name_or_path: str | None, files_only: bool) -> str | None:
    """A file (``files_only``: else a registry name, left as it is) or folder by its absolute path:
    workers do not share the driver's working folder."""
    if name_or_path is None or (files_only and not Path(name_or_path).is_file()):
        return name_or_path
    return str(Path(name_or_path).resolve())

