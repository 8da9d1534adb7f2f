"""The benchmark report: table rows, peer ratios, the end-to-end waterfall, files written."""

from f2n.benchmarks.regression import StageResult, SuiteResult
from f2n.benchmarks.report import engine_table, markdown, ncnn_check, peer_ratios, waterfall_steps, write_report

MACHINE = {"machine_class": "cpu-test-2c", "cpu": "Test CPU", "cores": 2, "torch_threads": 2, "gpu": "none",
           "torch": "x", "python": "3"}
MP = 0.065536


def _stage(key: str, group: str, seconds: float, device: str = "cpu", **extra) -> StageResult:
    return StageResult(key, group, device, seconds=seconds, reference_seconds=0.05, clock="cpu", **extra)


RESULT = SuiteResult("default", 5, 1, 1, MACHINE, (
    _stage("tiled_sr/torch-fp32-cpu[64x64]", "sr", 2.0, output_megapixels=MP),
    _stage("tiled_sr/onnx-reinit-fp32-cpu[64x64]", "sr", 1.5, output_megapixels=MP),
    _stage("tiled_sr/torch-bf16-cpu[64x64]", "sr", 0.9, output_megapixels=MP),
    _stage("tiled_sr/torch-fp16-cuda[64x64]", "sr", 0.01, device="cuda", output_megapixels=MP),
    _stage("tiled_sr/torch-fp32-cpu[128x128]", "sr", 0.5, output_megapixels=4 * MP),
    _stage("peer/ncnn-cpu[64x64]", "peer", 1.0, output_megapixels=MP),
    _stage("peer/pytorch-eager-cpu[64x64]", "peer", 3.0, output_megapixels=MP),
    _stage("end_to_end/torch-fp32-cpu[96x96]", "e2e", 9.0, breakdown={
        "decode": 0.5, "face.detect": 1.0, "adapt": 4.0, "adapt.step_1": 4.0, "tile": 3.0, "total": 9.0}),
    StageResult("handover/trt-fp16-cuda[rrdbnet-23]", "handover", "cuda", unavailable="TensorRT cannot be installed here"),
))


def test_peer_ratios_take_the_fastest_cpu_sr_path_and_the_fastest_fp32_one_on_the_same_input() -> None:
    ratios = {(ratio.peer, ratio.f2n_stage): ratio.ratio for ratio in peer_ratios(RESULT)}
    # not the CUDA stage, not the 128x128 one
    assert ratios == {
        ("peer/ncnn-cpu[64x64]", "tiled_sr/torch-bf16-cpu[64x64]"): 0.9,
        ("peer/ncnn-cpu[64x64]", "tiled_sr/onnx-reinit-fp32-cpu[64x64]"): 1.5,
        ("peer/pytorch-eager-cpu[64x64]", "tiled_sr/torch-bf16-cpu[64x64]"): 0.3,
        ("peer/pytorch-eager-cpu[64x64]", "tiled_sr/onnx-reinit-fp32-cpu[64x64]"): 0.5,
    }


def test_waterfall_leaves_out_nested_adaptation_steps_and_adds_the_rest() -> None:
    steps = waterfall_steps(dict(RESULT.stages[7].breakdown))
    assert [name for name, _ in steps] == ["decode", "face.detect", "adapt", "tile", "other"]
    assert abs(sum(seconds for _, seconds in steps) - 9.0) < 1e-9


def test_markdown_lists_measured_rows_skipped_reasons_and_peers() -> None:
    text = markdown(RESULT)
    assert "| `tiled_sr/torch-fp32-cpu[64x64]` | cpu | cpu | 2000.0 ms | 40.00 | 30.52 |" in text
    assert "- `handover/trt-fp16-cuda[rrdbnet-23]`: TensorRT cannot be installed here" in text
    assert "| `peer/ncnn-cpu[64x64]` | 1000 ms | `tiled_sr/onnx-reinit-fp32-cpu[64x64]` 1500 ms | 1.50 |" in text
    assert "| adapt | 4.000 |" in text and "| **total** | 9.000 |" in text
    assert "Test CPU (2 cores" in text


def test_write_report_writes_table_chart_and_docs_copy(tmp_path) -> None:
    written = write_report(RESULT, tmp_path / "results", tmp_path / "docs")
    table, chart, docs_chart = written
    assert table.name == "cpu-test-2c-default.md" and table.read_text() == markdown(RESULT)
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and chart.stat().st_size > 10_000
    assert docs_chart == tmp_path / "docs" / "benchmarks-cpu-test-2c-default.png"
    assert docs_chart.read_bytes() == chart.read_bytes()
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["cpu-test-2c-default.md", "cpu-test-2c-default.png"]


def test_the_peer_table_ranks_every_cpu_sr_path_against_ncnn() -> None:
    rows = [line for line in engine_table(RESULT) if line.startswith("| `")]
    assert rows == [  # fastest first; not the CUDA stage, not the other input size
        "| `tiled_sr/torch-bf16-cpu[64x64]` | 900 ms | 1.11x |",
        "| `peer/ncnn-cpu[64x64]` | 1000 ms | 1.00x |",
        "| `tiled_sr/onnx-reinit-fp32-cpu[64x64]` | 1500 ms | 0.67x |",
        "| `tiled_sr/torch-fp32-cpu[64x64]` | 2000 ms | 0.50x |",
        "| `peer/pytorch-eager-cpu[64x64]` | 3000 ms | 0.33x |",
    ]
    assert rows[0] in markdown(RESULT)


def test_the_check_fails_when_f2n_is_slower_than_ncnn_beyond_the_threshold() -> None:
    line, passed = ncnn_check(RESULT, 0.25)
    assert passed and line.startswith("ratio to ncnn: tiled_sr/torch-bf16-cpu[64x64] takes 0.90x the time")
    slower = SuiteResult("default", 5, 1, 1, MACHINE, (
        _stage("tiled_sr/torch-fp32-cpu[64x64]", "sr", 1.3, output_megapixels=MP),
        _stage("peer/ncnn-cpu[64x64]", "peer", 1.0, output_megapixels=MP)))
    assert ncnn_check(slower, 0.25)[1] is False and ncnn_check(slower, 0.5)[1] is True
    assert ncnn_check(SuiteResult("default", 5, 1, 1, MACHINE, RESULT.stages[:3]), 0.25) is None  # no ncnn peer
