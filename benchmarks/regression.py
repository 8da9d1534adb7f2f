"""The CI latency regression check.

Each stage's median time is divided by the median time of a fixed reference workload
measured in the same rounds (:mod:`f2n.benchmarks.timing`); those ratios are compared
with the committed baseline for this machine class, and a stage whose ratio grew by
more than the threshold (25 %) fails with a line naming it and both figures.

A stage's own reference rounds follow the load it ran under, but they can also come out
slow on their own: a baseline stage whose reference ran 15 % slower than the rest of its run
made a CI run fail that stage although it had got faster. So a stage's growth is also taken
against the run's reference (the median over all stages' reference times), and a stage
fails only when it grew beyond the threshold by both measures.

A stage over the limit is measured again (twice by default) and fails only if every
measurement is over: on a shared CI runner one stage in sixteen came out 27 % slow
once while the same commit passed on re-runs, whereas a real regression stays slow.
"""

import json
import statistics
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from f2n.benchmarks.machine import describe_machine, machine_class, usable_cores
from f2n.benchmarks.stages import Stage, StageUnavailable
from f2n.benchmarks.timing import injected_delays, measure
from f2n.errors import ConfigError, EngineUnavailableError
from f2n.fileio import write_bytes_atomic

BASELINE_DIR = Path(__file__).resolve().parent / "baseline"
DEFAULT_THRESHOLD = 0.25
DEFAULT_CONFIRMATIONS = 2
FORMAT_VERSION = 2


@dataclass(frozen=True)
class StageResult:
    key: str
    group: str
    device: str
    seconds: float | None = None  # median over the rounds on ``clock``; None when the stage did not run
    reference_seconds: float | None = None
    clock: str = ""  # "cpu" (process CPU time, CPU stages) or "wall" (GPU stages)
    output_megapixels: float = 0.0
    breakdown: Mapping[str, float] = field(default_factory=dict)  # median seconds per pipeline step
    unavailable: str = ""  # why the stage cannot run here (missing part, no GPU, ...)
    error: str = ""  # the stage ran and raised: always a failure

    @property
    def ratio(self) -> float | None:
        if self.seconds is None or self.reference_seconds is None:
            return None
        return self.seconds / self.reference_seconds


@dataclass(frozen=True)
class SuiteResult:
    suite: str
    rounds: int
    warmup: int
    threads: int  # torch/ONNX Runtime/ncnn threads every stage ran with
    machine: Mapping[str, str | int]
    stages: tuple[StageResult, ...] = field(default=())

    def by_key(self) -> dict[str, StageResult]:
        return {stage.key: stage for stage in self.stages}


def measure_stage(stage: Stage, rounds: int, warmup: int, delay_fraction: float = 0.0) -> StageResult:
    """Set the stage up (untimed) and time it; a stage that cannot run here is recorded
    with the reason, one that fails with the error, so the whole suite always finishes."""
    common = dict(key=stage.key, group=stage.group, device=stage.device, output_megapixels=stage.output_megapixels)
    try:
        run = stage.setup()
        timing = measure(run, rounds, warmup, delay_fraction, clock="cpu" if stage.device == "cpu" else "wall")
    except (StageUnavailable, EngineUnavailableError) as reason:
        return StageResult(**common, unavailable=str(reason))
    except Exception as error:  # reported as a failing stage by check and record
        return StageResult(**common, error=f"{type(error).__name__}: {error}".splitlines()[0])
    return StageResult(**common, seconds=timing.seconds, reference_seconds=timing.reference_seconds,
                       clock=timing.clock, breakdown=dict(timing.breakdown))


def _delay_for(stage: Stage, delays: Mapping[str, float]) -> float:
    """A delay names a stage by key, name or family (see ``Stage.matches``)."""
    return max((fraction for selector, fraction in delays.items() if stage.matches(selector)), default=0.0)


def run_suite(suite: str, stages: Iterable[Stage], rounds: int = 5, warmup: int = 1, threads: int = 1,
              progress: Callable[[StageResult], None] | None = None) -> SuiteResult:
    """Measure every stage in turn with ``threads`` threads (0: every usable core).
    One thread is the default because multi-threaded times on a shared 2-core runner swing
    by 10x and more with the load of other jobs, single-threaded ones by far less.
    ``F2N_BENCH_INJECT_DELAY`` (test hook) slows named stages."""
    delays = injected_delays()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or usable_cores())
    try:
        results = []
        for stage in stages:
            result = measure_stage(stage, rounds, warmup, _delay_for(stage, delays))
            if progress is not None:
                progress(result)
            results.append(result)
        return SuiteResult(suite, rounds, warmup, torch.get_num_threads(), describe_machine(), tuple(results))
    finally:
        torch.set_num_threads(previous)


def run_reference(result: SuiteResult, clock: str) -> float:
    """The machine's speed during a run: the median reference time over its stages on ``clock``."""
    return statistics.median(stage.reference_seconds for stage in result.stages
                             if stage.clock == clock and stage.reference_seconds is not None)


def growth(now: StageResult, current: SuiteResult, base: StageResult, baseline: SuiteResult) -> float:
    """How much slower the stage is than in the baseline (0.3 = 30 %): the smaller of its
    growth against its own reference rounds and against each run's reference (both stages ran)."""
    against_run = (now.seconds / run_reference(current, now.clock)) / (base.seconds / run_reference(baseline, base.clock))
    return min(now.ratio / base.ratio, against_run) - 1.0


def compare(current: SuiteResult, baseline: SuiteResult, threshold: float = DEFAULT_THRESHOLD) -> list[str]:
    """One line per failing stage: slower than the baseline ratio by more than ``threshold``,
    raising an error, or in the baseline but not measurable now. Empty list = pass."""
    if current.threads != baseline.threads:
        raise ConfigError(f"the baseline was measured with {baseline.threads} thread(s), this run with "
                          f"{current.threads}; pass --threads {baseline.threads} or re-record")
    failures = [f"{stage.key}: failed: {stage.error}" for stage in current.stages if stage.error]
    measured = current.by_key()
    for key, base in baseline.by_key().items():
        if base.ratio is None:
            continue
        now = measured.get(key)
        if now is None or now.error:
            if now is None:
                failures.append(f"{key}: in the baseline but not in this run's {current.suite!r} suite")
            continue
        if now.ratio is None:
            failures.append(f"{key}: in the baseline but unavailable now ({now.unavailable})")
            continue
        change = growth(now, current, base, baseline)
        if change > threshold:
            failures.append(
                f"{key}: {now.seconds * 1e3:.1f} ms = {now.ratio:.2f}x reference, baseline "
                f"{base.seconds * 1e3:.1f} ms = {base.ratio:.2f}x reference "
                f"({change:+.0%}, limit +{threshold:.0%})")
    return failures


def over_threshold(current: SuiteResult, baseline: SuiteResult, threshold: float = DEFAULT_THRESHOLD) -> tuple[str, ...]:
    """Keys of the stages that ran and are slower than the baseline by more than ``threshold``
    (errors and missing stages are not timing noise, so they are not among them)."""
    base = baseline.by_key()
    return tuple(stage.key for stage in current.stages
                 if stage.ratio is not None and stage.key in base and base[stage.key].ratio is not None
                 and growth(stage, current, base[stage.key], baseline) > threshold)


def keep_faster(current: SuiteResult, again: SuiteResult) -> SuiteResult:
    """``current`` with each stage that ``again`` measured at a lower ratio replaced by that measurement."""
    remeasured = again.by_key()

    def faster(stage: StageResult) -> StageResult:
        other = remeasured.get(stage.key)
        if other is None or other.ratio is None or (stage.ratio is not None and stage.ratio <= other.ratio):
            return stage
        return other

    return replace(current, stages=tuple(faster(stage) for stage in current.stages))


def confirmed_failures(current: SuiteResult, baseline: SuiteResult, remeasure: Callable[[tuple[str, ...]], SuiteResult],
                       threshold: float = DEFAULT_THRESHOLD, confirmations: int = DEFAULT_CONFIRMATIONS,
                       ) -> tuple[SuiteResult, list[str]]:
    """Compare, re-measuring the stages over the limit (``remeasure(keys)``) up to
    ``confirmations`` times and keeping each stage's fastest measurement; returns the
    merged result and ``compare``'s failure lines for it."""
    for _ in range(confirmations):
        slow = over_threshold(current, baseline, threshold)
        if not slow:
            break
        current = keep_faster(current, remeasure(slow))
    return current, compare(current, baseline, threshold)


def baseline_path(folder: Path = BASELINE_DIR, klass: str | None = None) -> Path:
    return folder / f"{klass or machine_class()}.json"


def save_result(result: SuiteResult, path: Path) -> None:
    write_bytes_atomic(path, (json.dumps({"format": FORMAT_VERSION, **asdict(result)}, indent=2) + "\n").encode())


def load_result(path: Path) -> SuiteResult:
    if not path.is_file():
        raise ConfigError(f"no benchmark result at {path}; record one with `f2n-bench record`")
    payload = json.loads(path.read_text())
    if payload.get("format") != FORMAT_VERSION:
        raise ConfigError(f"{path} has format {payload.get('format')!r}, expected {FORMAT_VERSION}; re-record it")
    stages = tuple(StageResult(**stage) for stage in payload["stages"])
    return SuiteResult(payload["suite"], payload["rounds"], payload["warmup"], payload["threads"], payload["machine"],
                       stages)
