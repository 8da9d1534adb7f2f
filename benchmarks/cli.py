"""``f2n-bench``: record the latency baseline, check against it in CI, write the report."""

import os
import sys
from dataclasses import replace
from pathlib import Path

import click

from f2n.benchmarks.machine import machine_class
from f2n.benchmarks.regression import (
    BASELINE_DIR,
    DEFAULT_CONFIRMATIONS,
    DEFAULT_THRESHOLD,
    StageResult,
    SuiteResult,
    baseline_path,
    confirmed_failures,
    load_result,
    run_suite,
    save_result,
)
from f2n.benchmarks.report import ncnn_check  # matplotlib is imported by the chart only
from f2n.benchmarks.stages import Stage
from f2n.benchmarks.suites import selected_suite, suite_names, suite_stages
from f2n.command import Group
from f2n.errors import ConfigError

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DOCS_DIR = Path(__file__).resolve().parents[1] / "docs"


def _progress(result: StageResult) -> None:
    """One line per stage on stderr as it finishes; failure lines (which start with the key) come at the end."""
    if result.ratio is not None:
        line = f"measured {result.key}: {result.seconds * 1e3:.1f} ms ({result.ratio:.2f}x reference)"
    elif result.error:
        line = f"failed   {result.key}: {result.error}"
    else:
        line = f"skipped  {result.key}: {result.unavailable}"
    click.echo(line, err=True)


def _names(option: str, text: str, suite: str, stages: tuple[Stage, ...]) -> set[str]:
    """Selectors listed in ``text`` (comma-separated, see ``Stage.matches``); unknown ones are an error."""
    names = {name.strip() for name in text.split(",") if name.strip()}
    unknown = {name for name in names if not any(stage.matches(name) for stage in stages)}
    if unknown:
        raise ConfigError(f"{option} names {', '.join(sorted(unknown))}, not in the {suite!r} suite "
                          f"(stages: {', '.join(stage.key for stage in stages)})")
    return names


def _measure(suite: str | None, only: str, exclude: str, rounds: int, warmup: int, threads: int) -> SuiteResult:
    name = selected_suite(suite)
    stages = suite_stages(name)
    if only:
        wanted = _names("--only", only, name, stages)
        stages = tuple(stage for stage in stages if any(stage.matches(selector) for selector in wanted))
    if exclude:
        unwanted = _names("--exclude", exclude, name, stages)
        stages = tuple(stage for stage in stages if not any(stage.matches(selector) for selector in unwanted))
    return run_suite(name, stages, rounds=rounds, warmup=warmup, threads=threads, progress=_progress)


def _suite_options(function):
    function = click.option("--suite", type=click.Choice(suite_names()), default=None,
                            help="Stage suite (default: $F2N_BENCH_SET or 'default').")(function)
    function = click.option("--only", default="", help="Comma-separated stages to run: keys, names or families "
                                                       "(tiled_sr/torch-fp32-cpu[48x48], tiled_sr/torch-fp32-cpu, tiled_sr).")(function)
    function = click.option("--exclude", default="", help="Comma-separated stages to leave out (as --only).")(function)
    function = click.option("--rounds", type=click.IntRange(1), default=5, show_default=True,
                            help="Timed rounds per stage (the median counts).")(function)
    function = click.option("--warmup", type=click.IntRange(0), default=1, show_default=True)(function)
    function = click.option("--threads", type=click.IntRange(0), default=None,
                            help="Threads for torch, ONNX Runtime and ncnn; 0: all cores. "
                                 "Default: 1 for record, the baseline's for check.")(function)
    return click.option("--baseline", type=click.Path(path_type=Path), default=None,
                        help=f"Baseline file (default: {BASELINE_DIR}/<machine class>.json).")(function)


@click.group(cls=Group)
def main() -> None:
    """Stage latency benchmarks and the latency regression check."""


@main.command()
@_suite_options
def record(suite: str | None, only: str, exclude: str, rounds: int, warmup: int, threads: int | None, baseline: Path | None) -> None:
    """Measure the suite and write it as this machine class's baseline (on purpose only)."""
    _record(suite, only, exclude, rounds, warmup, 1 if threads is None else threads, baseline or baseline_path())


def _record(suite: str | None, only: str, exclude: str, rounds: int, warmup: int, threads: int, path: Path) -> None:
    result = _measure(suite, only, exclude, rounds, warmup, threads)
    failed = [f"{stage.key}: failed: {stage.error}" for stage in result.stages if stage.error]
    if failed:
        _fail(failed + [f"baseline not written: {len(failed)} stage(s) failed"])
    measured = sum(stage.ratio is not None for stage in result.stages)
    if not measured:
        _fail([f"baseline not written: none of the {len(result.stages)} stages can run here"])
    save_result(result, path)
    click.echo(f"recorded {measured} stages for {machine_class()} in {path}")


@main.command()
@_suite_options
@click.option("--threshold", type=click.FloatRange(0, min_open=True), default=DEFAULT_THRESHOLD, show_default=True,
              help="Largest allowed growth of a stage's time/reference ratio.")
@click.option("--confirm", "confirmations", type=click.IntRange(0), default=DEFAULT_CONFIRMATIONS, show_default=True,
              help="Re-measure a stage over the limit up to this many times; it fails only if every measurement is.")
@click.option("--save", type=click.Path(path_type=Path), default=None, help="Also write this run's figures here.")
def check(suite: str | None, only: str, exclude: str, rounds: int, warmup: int, threads: int | None, baseline: Path | None,
          threshold: float, confirmations: int, save: Path | None) -> None:
    """Run the baseline's suite and fail if a stage is more than THRESHOLD slower than in the baseline."""
    if baseline is None and not baseline_path().is_file():
        # A class without a baseline (another CPU model, core count or feature set) has nothing to be
        # compared with: another class's figures would flag or hide the wrong things (issue 27).
        known = ", ".join(sorted(path.stem for path in BASELINE_DIR.glob("*.json"))) or "none"
        click.echo(f"no latency baseline for machine class {machine_class()} (in {BASELINE_DIR}: {known}); nothing checked. "
                   "Record one on this class with `f2n-bench record` and commit it", err=True)
        return
    _check(suite, only, exclude, rounds, warmup, threads, baseline or baseline_path(), threshold, confirmations, save)


def _check(suite: str | None, only: str, exclude: str, rounds: int, warmup: int, threads: int | None, path: Path,
           threshold: float, confirmations: int, save: Path | None) -> None:
    reference = load_result(path)  # before measuring: a missing baseline fails at once
    suite = suite or reference.suite
    threads = reference.threads if threads is None else threads
    result = _measure(suite, only, exclude, rounds, warmup, threads)
    if only or exclude:  # a partial run is only compared on the stages it measured
        measured = set(result.by_key())
        reference = replace(reference, stages=tuple(stage for stage in reference.stages if stage.key in measured))

    def remeasure(keys: tuple[str, ...]) -> SuiteResult:
        click.echo(f"over the limit, measuring again: {', '.join(keys)}", err=True)
        return _measure(suite, ",".join(keys), "", rounds, warmup, threads)

    result, failures = confirmed_failures(result, reference, remeasure, threshold, confirmations)
    against_ncnn = ncnn_check(result, threshold)  # f2n's fastest CPU path against ncnn in this very run
    if against_ncnn is not None:
        line, passed = against_ncnn
        if passed:
            click.echo(line, err=True)
        else:
            failures.append(line)
    if save is not None:
        save_result(result, save)
    if failures:
        _fail(failures)
    click.echo(f"latency check passed: {len(result.stages)} stages within +{threshold:.0%} of {path.name}")


@main.command()
@click.option("--result", "result_path", type=click.Path(path_type=Path), default=None,
              help="Figures to report (default: this machine class's baseline).")
@click.option("--out-dir", type=click.Path(path_type=Path), default=RESULTS_DIR, show_default=True)
@click.option("--docs-dir", type=click.Path(path_type=Path), default=DOCS_DIR, show_default=True)
def report(result_path: Path | None, out_dir: Path, docs_dir: Path) -> None:
    """Write the Markdown table and PNG chart of per-stage latency."""
    from f2n.benchmarks.report import write_report  # matplotlib is only needed here

    paths = write_report(load_result(result_path or baseline_path()), out_dir, docs_dir)
    click.echo("\n".join(str(path) for path in paths))


@main.command()
@click.option("--network", type=click.Choice(["tiny", "real"]), default="tiny", show_default=True,
              help="tiny: a 1-block RRDBNet (canvases dominate); real: Real-ESRGAN x4plus (slow on a CPU).")
@click.option("--steps", type=click.IntRange(1), default=2, show_default=True, help="Adaptation steps of the adapted run.")
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True)
@click.option("--out-dir", type=click.Path(path_type=Path), default=RESULTS_DIR, show_default=True)
def memory(network: str, steps: int, threads: int, out_dir: Path) -> None:
    """Peak memory of an adapted run against --no-adapt (3 MP photo, 4 faces); fails over the target ratio."""
    from f2n.benchmarks.memory import markdown, measure_memory
    from f2n.fileio import write_text_atomic

    result = measure_memory(network, steps, threads)
    text = markdown(result, machine_class())
    path = write_text_atomic(out_dir / f"{machine_class()}-memory-{network}.md", text)
    click.echo(text + str(path))
    if not result.within_target:
        _fail([f"memory: adapted run peaks at {result.ratio:.2f}x the --no-adapt run, target <= 1.2"])


@main.command()
@click.option("--network", type=click.Choice(["real", "tiny"]), default="real", show_default=True,
              help="real: Real-ESRGAN x4plus (what the target is about); tiny: a 1-block RRDBNet (a smoke run).")
@click.option("--threads", type=click.IntRange(1), default=None, help="Default: every core of this machine.")
@click.option("--out-dir", type=click.Path(path_type=Path), default=RESULTS_DIR, show_default=True)
def adaptation(network: str, threads: int | None, out_dir: Path) -> None:
    """One photo's adaptation at the default settings, every step of the budget; fails over the target."""
    from f2n.benchmarks.adaptation import TARGET_SECONDS, markdown, measure_adaptation
    from f2n.fileio import write_text_atomic

    result = measure_adaptation(network, threads=threads or os.cpu_count() or 1)
    text = markdown(result, machine_class())
    path = write_text_atomic(out_dir / f"{machine_class()}-adaptation-{network}.md", text)
    click.echo(text + str(path))
    if not result.within_target:
        _fail([f"adaptation: {result.adapt_seconds:.1f} s for one photo, target <= {TARGET_SECONDS:.0f} s"])


def _fail(lines: list[str]) -> None:
    for line in lines:
        click.echo(line, err=True)
    sys.exit(1)
