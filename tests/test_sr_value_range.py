"""The SR network's value range: ReDegNet's F2N-ESRGAN (trained in [-1, 1]) run by every engine
as the official code runs it, and where the range comes from (registry, file record,
--sr-range, the official file names).

The fixture (tests/data/f2n_esrgan_official/README.md) is the official F2N-ESRGAN
``handle_restoration`` run on random weights: its network saw a mirror-padded 16x16 photo in
[-1, 1]; f2n feeds the same pixels in [0, 1] and must land on the same output."""

import json
import shutil
from pathlib import Path

import onnx
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from f2n.errors import ConfigError, WeightsError
from f2n.export.aoti import package_key
from f2n.export.fallback import Fp32Twin
from f2n.export.onnx_export import cached_onnx, export_onnx, graph_value_range
from f2n.export.ort_engine import OrtEngine
from f2n.export.torch_engine import TorchEngine
from f2n.nets import RRDBNet
from f2n.runtime import cli
from f2n.runtime.build import load_supported_network
from f2n.runtime.demo import demo_pair
from f2n.runtime.images import read_image, write_image
from f2n.weights import add_weight, load_sr_network, save_f2n_checkpoint
from f2n.weights.checkpoint import read_weight_file

FIXTURES = Path(__file__).parent / "data" / "f2n_esrgan_official"
OFFICIAL = FIXTURES / "F2NESRGAN.pth"


@pytest.fixture(scope="module")
def official() -> dict[str, torch.Tensor]:
    return load_file(FIXTURES / "f2n_esrgan_io.safetensors")


def network_input(official: dict[str, torch.Tensor]) -> torch.Tensor:
    """The pixels the official network saw, in f2n's [0, 1]."""
    return (official["network_input"] + 1) / 2


def as_official_output(sr: torch.Tensor, official: dict[str, torch.Tensor]) -> torch.Tensor:
    """f2n's (1, 3, 4h', 4w') output of the padded input as the official code returns it:
    the photo's x4 area, HWC, clipped, in [0, 255]."""
    height, width = official["output"].shape[:2]
    return sr[0, :, :height, :width].permute(1, 2, 0).clamp(0, 1) * 255


def max_difference(engine_output: torch.Tensor, official: dict[str, torch.Tensor]) -> float:
    """Max abs difference in [0, 1] units."""
    return float((as_official_output(engine_output, official) - official["output"]).abs().max()) / 255


def test_the_fixture_input_is_the_photo_mirror_padded(official: dict[str, torch.Tensor]) -> None:
    padded = torch.round(network_input(official)[0].permute(1, 2, 0) * 255).to(torch.uint8)
    height, width = official["photo"].shape[:2]
    assert torch.equal(padded[:height, :width], official["photo"])


def test_an_f2n_esrgan_checkpoint_of_the_official_code_runs_as_its_restoration_on_torch(official: dict[str, torch.Tensor]) -> None:
    loaded = load_sr_network(OFFICIAL)
    descriptor = loaded.descriptor
    assert (descriptor.scale, descriptor.num_feat, descriptor.num_block, descriptor.num_grow_ch, descriptor.value_range) == (4, 8, 1, 4, "signed")
    output = TorchEngine(loaded.model).run(network_input(official))
    assert max_difference(output, official) <= 1e-5


def test_the_same_file_run_as_unit_does_not(official: dict[str, torch.Tensor]) -> None:
    loaded = load_sr_network(OFFICIAL, value_range="unit")
    assert max_difference(TorchEngine(loaded.model).run(network_input(official)), official) > 0.1


def test_a_stock_state_dict_loads_strictly_into_a_signed_network() -> None:
    """The range is no buffer: names and shapes stay those of every RRDBNet release."""
    unit, signed = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4), RRDBNet(num_feat=8, num_block=1, num_grow_ch=4, value_range="signed")
    assert signed.state_dict().keys() == unit.state_dict().keys()
    signed.load_state_dict(unit.state_dict(), strict=True)


def test_onnx_runtime_runs_the_range_carried_by_the_graph(official: dict[str, torch.Tensor], tmp_path: Path) -> None:
    loaded = load_sr_network(OFFICIAL)
    path = export_onnx(loaded.model, tmp_path / "f2nesrgan.onnx")
    output = OrtEngine(path, loaded.model.state_dict()).run(network_input(official))
    assert max_difference(output, official) <= 1e-4  # FP32_TOLERANCE, as every ONNX export is verified


def test_openvino_runs_the_range_carried_by_the_graph(official: dict[str, torch.Tensor], tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    from f2n.export.openvino_engine import OpenVinoEngine

    loaded = load_sr_network(OFFICIAL)
    path = export_onnx(loaded.model, tmp_path / "f2nesrgan.onnx")
    output = OpenVinoEngine(path, loaded.model.state_dict(), precision="fp32", threads=1).run(network_input(official))
    assert max_difference(output, official) <= 1e-4


def test_the_fp32_twin_of_a_half_precision_engine_keeps_the_range(official: dict[str, torch.Tensor], tmp_path: Path) -> None:
    """An fp16 graph redoes overflowing tiles through an eager twin rebuilt from the weight
    shapes: the range comes from the graph's record, not from the shapes."""
    loaded = load_sr_network(OFFICIAL)
    path = export_onnx(loaded.model, tmp_path / "f2nesrgan16.onnx", precision="fp16")
    engine = OrtEngine(path, loaded.model.state_dict(), replacement="inputs")
    assert max_difference(engine.run_fp32(network_input(official)), official) <= 1e-5
    unit_twin = Fp32Twin("cpu", "test", "unit")
    unit_twin.follow(loaded.model.state_dict())
    assert max_difference(unit_twin.run(network_input(official)), official) > 0.1  # the check above can fail


def test_the_tensorrt_refit_source_gives_its_twin_the_graphs_range(tmp_path: Path) -> None:
    """No GPU here: what the TensorRT engine hands its twin is read from the ONNX graph."""
    from f2n.export.trt_refit import read_refit_source

    loaded = load_sr_network(OFFICIAL)
    assert read_refit_source(export_onnx(loaded.model, tmp_path / "f.onnx"), loaded.model.state_dict().keys()).value_range == "signed"


def test_compiled_artifacts_are_keyed_by_the_range() -> None:
    """A cached [0, 1] graph must never serve a signed network of the same shapes."""
    unit = load_sr_network(OFFICIAL, value_range="unit").model
    signed = load_sr_network(OFFICIAL).model
    unit_onnx, signed_onnx = cached_onnx(unit), cached_onnx(signed)
    assert unit_onnx != signed_onnx
    assert [graph_value_range(onnx.load(str(p))) for p in (unit_onnx, signed_onnx)] == ["unit", "signed"]
    assert package_key(unit, device="cpu", precision="fp32") != package_key(signed, device="cpu", precision="fp32")


@pytest.mark.slow
def test_aotinductor_runs_the_range_and_records_it_for_its_twin(official: dict[str, torch.Tensor], tmp_path: Path) -> None:
    """One tiny compile (~25-70 s on a 2-core CPU). A bf16/fp16 package's twin reads the
    range from the package's metadata: Inductor must keep it there."""
    from f2n.export.aoti import AotiEngine, compile_package
    from f2n.export.cache import recorded_range

    loaded = load_sr_network(OFFICIAL)
    package = compile_package(loaded.model, tmp_path / "f2nesrgan.pt2")
    assert max_difference(AotiEngine(package, loaded.model.state_dict()).run(network_input(official)), official) <= 1e-5
    assert recorded_range(torch._inductor.aoti_load_package(str(package)).get_metadata(), package) == "signed"


# Where the range comes from

def test_a_renamed_raw_file_is_unit_unless_sr_range_says_signed(tmp_path: Path) -> None:
    renamed = shutil.copy(OFFICIAL, tmp_path / "mine.pth")
    assert load_sr_network(renamed).descriptor.value_range == "unit"
    overridden = load_sr_network(renamed, value_range="signed")
    assert (overridden.descriptor.value_range, overridden.model.value_range, overridden.value_range.source) == ("signed", "signed", "--sr-range")


@pytest.mark.parametrize("name", ["F2NESRGAN.pth", "net_f2n_g.pth", "net_f2n_init.pth"])
def test_the_official_file_names_are_signed(name: str, tmp_path: Path) -> None:
    loaded = load_sr_network(shutil.copy(OFFICIAL, tmp_path / name))
    assert loaded.descriptor.value_range == "signed" and "official F2N-ESRGAN" in loaded.value_range.source


def test_the_registry_entry_is_signed_whatever_file_was_added(tmp_path: Path) -> None:
    add_weight("f2n-esrgan", shutil.copy(OFFICIAL, tmp_path / "net_f2n_g_copy.pth"))  # as f2n-models add does
    loaded = load_sr_network("f2n-esrgan")
    assert loaded.descriptor.value_range == "signed" and loaded.value_range.source == "registry entry f2n-esrgan"
    assert load_sr_network("f2n-esrgan", value_range="unit").descriptor.value_range == "unit"


def test_an_f2n_checkpoint_records_the_range_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    state = read_weight_file(OFFICIAL).tensors
    path = save_f2n_checkpoint(tmp_path / "signed.safetensors", state, meta={"value_range": "signed"})
    loaded = load_sr_network(path)
    assert loaded.descriptor.value_range == "signed" and loaded.value_range.source == "recorded in signed.safetensors"
    assert load_sr_network(path, value_range="unit").descriptor.value_range == "unit"
    with pytest.raises(WeightsError, match="value_range is 'pm1'"):
        save_f2n_checkpoint(tmp_path / "bad.safetensors", state, meta={"value_range": "pm1"})


def test_a_training_checkpoint_of_a_signed_network_stays_signed(tmp_path: Path) -> None:
    """f2n-train started from F2N-ESRGAN writes checkpoints that load in its range."""
    from f2n.training.checkpoint import TrainState, save_checkpoint

    sr = load_sr_network(OFFICIAL).model
    state = TrainState(3, {"sr": sr.state_dict()}, {}, {})
    path = save_checkpoint(tmp_path, state, sr.state_dict(), alpha=None, value_range=sr.value_range)
    assert load_sr_network(path).descriptor.value_range == "signed"


def test_an_already_loaded_network_keeps_its_range_or_says_it_cannot_change() -> None:
    loaded = load_sr_network(OFFICIAL)
    assert load_supported_network(loaded, value_range="signed") is loaded
    with pytest.raises(ConfigError, match="loaded as signed"):
        load_supported_network(loaded, value_range="unit")


def invoke(*args: object) -> "CliRunner.invoke":
    return CliRunner().invoke(cli.command, [str(a) for a in args], catch_exceptions=False)


def test_adapt_and_run_equals_the_official_restoration_and_reports_the_range(
        official: dict[str, torch.Tensor], tmp_path: Path) -> None:
    """The base network through the CLI, on the padded photo the official network saw: equal
    to the official output but for 8-bit rounding; --sr-range unit is not."""
    photo = tmp_path / "padded.png"
    write_image(photo, network_input(official)[0].permute(1, 2, 0).numpy())
    outputs = {}
    for extra in ((), ("--sr-range", "unit")):
        out, report = tmp_path / f"sr{len(extra)}.png", tmp_path / f"report{len(extra)}.json"
        result = invoke(photo, "--out", out, "--checkpoint", OFFICIAL, "--no-adapt", "--no-progress",
                        "--engine", "torch", "--report", report, *extra)
        assert result.exit_code == 0, result.output
        settings = json.loads(report.read_text())["photos"][0]["settings"]
        outputs[settings["sr_range"]] = torch.from_numpy(read_image(out).rgb).permute(2, 0, 1)[None]
        assert f"SR value range {settings['sr_range']}" in result.output
    assert max_difference(outputs["signed"], official) <= 1 / 255
    assert max_difference(outputs["unit"], official) > 0.1


def test_save_weights_records_the_range_and_it_round_trips(tmp_path: Path) -> None:
    """θ′ of a signed network, saved under any name, loads signed again; --sr-range still overrides."""
    gt, lq = demo_pair()
    write_image(tmp_path / "gt.png", gt)
    write_image(tmp_path / "photo.png", lq)
    theta = tmp_path / "theta.safetensors"
    result = invoke(tmp_path / "photo.png", "--out", tmp_path / "sr.png", "--checkpoint", OFFICIAL,
                    "--prior", f"oracle:{tmp_path / 'gt.png'}", "--save-weights", theta, "--engine", "torch",
                    "--tile", "64", "--tile-overlap", "16", "--steps", "2", "--patches-per-face", "2", "--no-progress")
    assert result.exit_code == 0 and "adapted" in result.output, result.output
    reloaded = load_sr_network(theta)
    assert reloaded.descriptor.value_range == "signed" and reloaded.value_range.source == "recorded in theta.safetensors"
    assert load_sr_network(theta, value_range="unit").descriptor.value_range == "unit"


def test_a_bad_sr_range_is_one_line_and_exit_5(tmp_path: Path) -> None:
    result = invoke(tmp_path / "none.png", "--checkpoint", OFFICIAL, "--sr-range", "pm1")
    assert result.exit_code == ConfigError.exit_code and len(result.output.strip().splitlines()) == 1
    assert "'--sr-range'" in result.output


def test_f2n_export_takes_sr_range_and_the_graph_records_it(tmp_path: Path) -> None:
    from f2n.export.cli import main as export_main

    renamed = shutil.copy(OFFICIAL, tmp_path / "mine.pth")
    for extra, expected in (((), "unit"), (("--sr-range", "signed"), "signed")):
        out = tmp_path / f"{expected}.onnx"
        result = CliRunner().invoke(export_main, ["--weights", str(renamed), "--out", str(out), *extra])
        assert result.exit_code == 0 and f"value range: {expected}" in result.output, result.output
        assert graph_value_range(onnx.load(str(out))) == expected


def test_f2n_batch_options_carry_sr_range_to_each_workers_pipeline(tmp_path: Path) -> None:
    from f2n.runtime.options import PipelineOptions, pipeline_from_options

    renamed = str(shutil.copy(OFFICIAL, tmp_path / "mine.pth"))
    pipeline = pipeline_from_options(PipelineOptions(checkpoint=renamed, sr_range="signed", engine="torch", device="cpu", no_adapt=True))
    assert (pipeline.model.value_range, pipeline.sr_range.source) == ("signed", "--sr-range")
    with pytest.raises(ConfigError, match="--sr-range must be one of unit, signed"):
        PipelineOptions(checkpoint=renamed, sr_range="pm1")
