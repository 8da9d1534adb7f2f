"""The human-readable side of a suite result: a Markdown table, f2n against its peers,
and a PNG chart (per-stage latency, SR seconds per output megapixel per engine)."""

import io
from dataclasses import dataclass
from pathlib import Path

from f2n.benchmarks.regression import StageResult, SuiteResult
from f2n.fileio import write_bytes_atomic

GROUP_ORDER = ("io", "face", "adapt", "handover", "sr", "e2e", "peer")
GROUP_COLOURS = {"io": "#8c8c8c", "face": "#1f77b4", "adapt": "#d62728", "handover": "#9467bd",
                 "sr": "#2ca02c", "e2e": "#ff7f0e", "peer": "#7f7f7f"}


@dataclass(frozen=True)
class PeerRatio:
    """f2n's fastest CPU SR path against one peer on the same input; ratio < 1: f2n is faster."""

    peer: str
    f2n_stage: str
    f2n_seconds: float
    peer_seconds: float

    @property
    def ratio(self) -> float:
        return self.f2n_seconds / self.peer_seconds


def _variant(key: str) -> str:
    return key[key.index("[") + 1:-1]


def peer_ratios(result: SuiteResult) -> list[PeerRatio]:
    """Per peer: f2n's fastest CPU SR stage on the same input, and its fastest fp32 one
    where that is a different stage (the peers compute in fp32)."""
    measured = [stage for stage in result.stages if stage.seconds is not None]
    ratios = []
    for peer in (stage for stage in measured if stage.group == "peer"):
        same_input = [stage for stage in measured if stage.group == "sr" and stage.device == "cpu"
                      and _variant(stage.key) == _variant(peer.key)]
        fp32 = [stage for stage in same_input if "-fp32-" in stage.key]
        candidates = {min(group, key=lambda stage: stage.seconds).key: min(group, key=lambda stage: stage.seconds)
                      for group in (same_input, fp32) if group}
        ratios += [PeerRatio(peer.key, best.key, best.seconds, peer.seconds) for best in candidates.values()]
    return ratios


NCNN_PEER = "peer/ncnn-cpu"


def engine_table(result: SuiteResult) -> list[str]:
    """Markdown rows: every CPU SR stage on the ncnn peer's input, fastest first, with its speed
    relative to ncnn (ncnn's time / the stage's: > 1 is faster than ncnn) — the peer table."""
    measured = [stage for stage in result.stages if stage.seconds is not None]
    lines = []
    for peer in (stage for stage in measured if stage.key.startswith(NCNN_PEER + "[")):
        rows = sorted((stage for stage in measured if stage.device == "cpu" and stage.group in ("sr", "peer")
                       and _variant(stage.key) == _variant(peer.key)), key=lambda stage: stage.seconds)
        lines += ["", f"| SR on the same {_variant(peer.key)} photo | CPU time | speed vs ncnn |", "| --- | ---: | ---: |"]
        lines += [f"| `{stage.key}` | {stage.seconds * 1e3:.0f} ms | {peer.seconds / stage.seconds:.2f}x |"
                  for stage in rows]
    return lines


def ncnn_check(result: SuiteResult, threshold: float) -> tuple[str, bool] | None:
    """(line, passed): f2n's fastest CPU SR path against the ncnn peer in this run; it fails when
    f2n takes more than 1 + ``threshold`` times ncnn's time. None without both stages."""
    ratios = [ratio for ratio in peer_ratios(result) if ratio.peer.startswith(NCNN_PEER + "[")]
    if not ratios:
        return None
    best = min(ratios, key=lambda ratio: ratio.ratio)
    passed = best.ratio <= 1.0 + threshold
    line = (f"ratio to ncnn: {best.f2n_stage} takes {best.ratio:.2f}x the time of {best.peer} "
            f"({best.peer_seconds / best.f2n_seconds:.2f}x ncnn's speed; limit {1.0 + threshold:.2f}x the time)")
    return line, passed


def _ordered(result: SuiteResult) -> list[StageResult]:
    return sorted(result.stages, key=lambda stage: GROUP_ORDER.index(stage.group))


def markdown(result: SuiteResult) -> str:
    machine = result.machine
    lines = [
        f"Machine class `{machine['machine_class']}`: CPU {machine['cpu']} ({machine['cores']} cores), "
        f"GPU {machine['gpu']}, torch {machine['torch']}; every stage ran with {result.threads} thread(s). "
        f"Suite `{result.suite}`, median of {result.rounds} rounds after {result.warmup} warm-up.",
        "",
        "Times are medians of process CPU time for CPU stages (with one thread, the wall time on an idle core) "
        "and of wall time for GPU stages.",
        "",
        "| stage | device | clock | median | x reference | s per output MP |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    for stage in _ordered(result):
        if stage.seconds is None:
            continue
        per_mp = f"{stage.seconds / stage.output_megapixels:.2f}" if stage.output_megapixels else ""
        lines.append(f"| `{stage.key}` | {stage.device} | {stage.clock} | {stage.seconds * 1e3:.1f} ms "
                     f"| {stage.ratio:.2f} | {per_mp} |")
    skipped = [stage for stage in result.stages if stage.seconds is None]
    if skipped:
        lines += ["", "Not measured here:", ""]
        lines += [f"- `{stage.key}`: {stage.unavailable or 'failed: ' + stage.error}" for stage in skipped]
    for stage in (stage for stage in result.stages if stage.breakdown):
        lines += ["", f"End to end `{stage.key}`, median wall seconds per step (the pipeline's own report):", "",
                  "| step | seconds |", "| --- | ---: |"]
        lines += [f"| {name} | {seconds:.3f} |" for name, seconds in waterfall_steps(dict(stage.breakdown))]
        lines.append(f"| **total** | {stage.breakdown.get('total', stage.seconds):.3f} |")
    ratios = peer_ratios(result)
    if ratios:
        lines += ["", "| peer (same input) | peer | f2n's fastest CPU path | f2n / peer |", "| --- | ---: | --- | ---: |"]
        lines += [f"| `{r.peer}` | {r.peer_seconds * 1e3:.0f} ms | `{r.f2n_stage}` {r.f2n_seconds * 1e3:.0f} ms "
                  f"| {r.ratio:.2f} |" for r in ratios]
    lines += engine_table(result)
    return "\n".join(lines) + "\n"


def waterfall_steps(breakdown: dict[str, float]) -> list[tuple[str, float]]:
    """The pipeline's top-level steps in run order, plus the unaccounted rest of ``total``
    (``adapt.step_i`` are parts of ``adapt`` and are left out)."""
    steps = [(key, seconds) for key, seconds in breakdown.items()
             if key != "total" and not key.startswith("adapt.step_")]
    rest = breakdown.get("total", 0.0) - sum(seconds for _, seconds in steps)
    return steps + ([("other", rest)] if rest > 0 else [])


def _bars(axis, stages: list[StageResult], values: list[float], xlabel: str, title: str) -> None:
    axis.barh([stage.key for stage in stages], values, color=[GROUP_COLOURS[stage.group] for stage in stages])
    axis.invert_yaxis()
    axis.set_xlabel(xlabel)
    axis.set_title(title)


def write_chart(result: SuiteResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    measured = [stage for stage in _ordered(result) if stage.seconds is not None]
    sr = [stage for stage in measured if stage.group in ("sr", "peer")]
    end_to_end = [stage for stage in measured if stage.breakdown]
    heights = [len(measured), len(sr)] + [len(waterfall_steps(dict(stage.breakdown))) for stage in end_to_end]
    figure, axes = plt.subplots(len(heights), 1, figsize=(11, 0.32 * sum(heights) + 1.6 * len(heights)),
                                gridspec_kw={"height_ratios": heights})
    _bars(axes[0], measured, [stage.seconds * 1e3 for stage in measured],
          "median time per call (ms, log scale; CPU time for CPU stages)", "per stage")
    axes[0].set_xscale("log")
    _bars(axes[1], sr, [stage.seconds / stage.output_megapixels for stage in sr],
          "seconds per megapixel of x4 output", "SR per engine and precision (grey: peers on the same input)")
    for axis, stage in zip(axes[2:], end_to_end):
        steps = waterfall_steps(dict(stage.breakdown))
        starts = [sum(seconds for _, seconds in steps[:index]) for index in range(len(steps))]
        axis.barh([name for name, _ in steps], [seconds for _, seconds in steps], left=starts,
                  color=GROUP_COLOURS["e2e"])
        axis.invert_yaxis()
        axis.set_xlabel("seconds since the photo was opened")
        axis.set_title(f"end to end, waterfall of median step times\n{stage.key}")
    figure.suptitle(f"f2n stage latency on {result.machine['machine_class']} ({result.suite} suite)")
    figure.tight_layout()
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=100)
    plt.close(figure)
    write_bytes_atomic(path, png.getvalue())


def write_report(result: SuiteResult, out_dir: Path, docs_dir: Path | None = None) -> list[Path]:
    """``<class>-<suite>.md`` and ``.png`` in ``out_dir``; the chart also into ``docs_dir``."""
    stem = f"{result.machine['machine_class']}-{result.suite}"
    table, chart = out_dir / f"{stem}.md", out_dir / f"{stem}.png"
    write_bytes_atomic(table, markdown(result).encode())
    write_chart(result, chart)
    written = [table, chart]
    if docs_dir is not None:
        written.append(write_bytes_atomic(docs_dir / f"benchmarks-{stem}.png", chart.read_bytes()))
    return written
