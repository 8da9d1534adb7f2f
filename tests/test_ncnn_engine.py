"""The ncnn engine: θ′ written as an ncnn graph in memory (the converter in reverse), run by
ncnn's kernels on the CPU and through Vulkan (Mesa's lavapipe here), against the torch engine."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from f2n.errors import ConfigError, EngineUnavailableError, WeightsError
from f2n.export.ncnn_engine import VULKAN_CPU_TYPE, NcnnEngine, use_vulkan, vulkan_from_environment
from f2n.nets import RRDBNet
from f2n.runtime import cli
from f2n.runtime.adapt import AdaptConfig, adapt
from f2n.runtime.images import read_image, write_image
from f2n.runtime.tiling import tiled_upscale
from f2n.export.torch_engine import TorchEngine
from f2n.runtime.types import PatchBatch
from f2n.weights.ncnn_convert import convert_ncnn_rrdbnet, rrdbnet_bin, rrdbnet_param
from f2n.weights.sr import infer_hyperparameters

pytest.importorskip("ncnn", reason="--engine ncnn needs the ncnn package (the [cpu] extra)")

TILE, OVERLAP = 32, 8


def tiny(seed: int = 0, value_range: str = "unit") -> RRDBNet:
    torch.manual_seed(seed)
    return RRDBNet(num_block=2, num_feat=8, num_grow_ch=4, value_range=value_range).eval()


def adapted(net: RRDBNet) -> dict[str, torch.Tensor]:
    """θ′ from a real adaptation run (3 Adam steps towards a brighter target)."""
    generator = torch.Generator().manual_seed(1)
    lq = torch.rand(2, 3, 12, 12, generator=generator)
    target = torch.clamp(torch.nn.functional.interpolate(lq, scale_factor=4, mode="bicubic") + 0.3, 0, 1)
    patches = PatchBatch(lq, target, torch.ones(2, 1, 48, 48))
    return adapt(net, patches, AdaptConfig(steps=3, lr=0.01, optimizer="adam", params="all", holdout=0)).weights


def test_the_written_graph_reads_back_through_the_converter(tmp_path: Path) -> None:
    """rrdbnet_param/bin are the converter's inverse: parse_param + read_conv_blobs give θ back
    exactly, whatever the order of the state dict's keys."""
    state = tiny(3).state_dict()
    hyper = infer_hyperparameters(state, tmp_path)
    shuffled = dict(reversed(list(state.items())))
    (tmp_path / "m.param").write_text(rrdbnet_param(hyper))
    (tmp_path / "m.bin").write_bytes(rrdbnet_bin(shuffled, hyper))
    back, back_hyper = convert_ncnn_rrdbnet(tmp_path / "m.param", tmp_path / "m.bin")
    assert back_hyper == hyper
    assert back.keys() == state.keys() and all(torch.equal(back[key], state[key]) for key in state)


@pytest.mark.parametrize("value_range", ["unit", "signed"])
def test_cpu_fp32_gives_the_torch_engines_tiles_and_follows_new_weights(value_range: str) -> None:
    net = tiny(value_range=value_range)
    photo = np.random.default_rng(0).random((40, 44, 3), dtype=np.float32)
    engine = NcnnEngine(net, vulkan=False, threads=1)
    base = tiled_upscale(engine, photo, tile=TILE, overlap=OVERLAP)
    np.testing.assert_allclose(base, tiled_upscale(TorchEngine(net), photo, tile=TILE, overlap=OVERLAP), atol=1e-5)

    theta = adapted(net)
    engine.set_weights(theta)
    reference = TorchEngine(net)
    reference.set_weights(theta)
    after = tiled_upscale(engine, photo, tile=TILE, overlap=OVERLAP)
    assert np.abs(after - base).max() > 1e-3  # the weights reached ncnn
    np.testing.assert_allclose(after, tiled_upscale(reference, photo, tile=TILE, overlap=OVERLAP), atol=1e-5)


@pytest.mark.slow
def test_real_x4plus_within_1e4_of_torch_on_a_real_photo(real_sr_weights: Path, shared_data: Path) -> None:
    from f2n.weights import load_sr_network

    network = load_sr_network(real_sr_weights).model.eval()
    rgb = read_image(shared_data / "real_lq" / "Lincoln.png").rgb
    top, left = rgb.shape[0] // 3, rgb.shape[1] // 3
    crop = np.ascontiguousarray(rgb[top:top + 24, left:left + 40, :3], dtype=np.float32)  # two tiles
    ours = tiled_upscale(NcnnEngine(network, vulkan=False, threads=1), crop, tile=TILE, overlap=OVERLAP)
    torch_fp32 = tiled_upscale(TorchEngine(network), crop, tile=TILE, overlap=OVERLAP)
    assert np.abs(ours - torch_fp32).max() <= 1e-4


# The Vulkan cases run in a fresh interpreter: lavapipe JIT-compiles with its own LLVM, which
# crashes a process that has loaded TensorFlow's (the MetaF2N import tests run in this one).
VULKAN_CASE = """
import importlib.util, json, sys
import numpy as np
spec = importlib.util.spec_from_file_location("ncnn_cases", sys.argv[1])
cases = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cases)
from f2n.export.ncnn_engine import vulkan_devices
if not vulkan_devices():
    print(json.dumps({"devices": 0}))
    sys.exit()
net = cases.tiny(1)
photo = np.random.default_rng(1).random((20, 24, 3), dtype=np.float32)
theta = cases.adapted(net)


def upscaled(engine):
    engine.set_weights(theta)
    return cases.tiled_upscale(engine, photo, tile=cases.TILE, overlap=cases.OVERLAP)


cpu = upscaled(cases.NcnnEngine(net, vulkan=False, threads=1))
results = {}
for precision in sys.argv[2:]:  # a new engine each
    gpu = cases.NcnnEngine(net, vulkan=True, precision=precision, threads=1)
    results[precision] = {"vulkan": gpu.vulkan, "difference": float(np.abs(upscaled(gpu) - cpu).max())}
print(json.dumps({"devices": 1, "results": results}))
"""
VULKAN_PRECISIONS = {"fp32": 1e-5, "fp16": 5e-3}  # and each one's tolerance


@pytest.fixture(scope="module")
def vulkan_results() -> dict:
    """VULKAN_CASE's outcome for every precision: one fresh interpreter (and one Vulkan instance) for all."""
    done = subprocess.run([sys.executable, "-c", VULKAN_CASE, __file__, *VULKAN_PRECISIONS], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("precision", "tolerance"), VULKAN_PRECISIONS.items())
def test_vulkan_gives_the_cpu_paths_output(vulkan_results: dict, precision: str, tolerance: float) -> None:
    """On lavapipe (or a GPU) the Vulkan path equals ncnn's CPU fp32 path, within fp16's rounding
    when fp16 storage and arithmetic are on; both after a weight hand-over."""
    if not vulkan_results["devices"]:
        pytest.skip("ncnn sees no Vulkan device: install Mesa's lavapipe (apt-get install mesa-vulkan-drivers "
                    "libvulkan1; .ci/run does)")
    result = vulkan_results["results"][precision]
    assert result["vulkan"]
    assert result["difference"] <= tolerance
    if precision == "fp16":
        assert result["difference"] > 1e-6  # it really computed in fp16 (Vulkan honours it, unlike this x86 CPU)


def test_vulkan_rule() -> None:
    assert use_vulkan(None, ()) is False
    assert use_vulkan(None, (VULKAN_CPU_TYPE,)) is False  # lavapipe is slower than ncnn's CPU kernels
    assert use_vulkan(None, (VULKAN_CPU_TYPE, 0)) is True  # a discrete GPU
    assert use_vulkan(False, (0,)) is False and use_vulkan(True, (VULKAN_CPU_TYPE,)) is True
    with pytest.raises(EngineUnavailableError, match="no Vulkan device.*mesa-vulkan-drivers"):
        use_vulkan(True, ())


def test_vulkan_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for value, expected in (("", None), ("auto", None), ("1", True), ("0", False)):
        monkeypatch.setenv("F2N_NCNN_VULKAN", value)
        assert vulkan_from_environment() is expected
    monkeypatch.setenv("F2N_NCNN_VULKAN", "yes")
    with pytest.raises(ConfigError, match="must be 1, 0 or auto, got 'yes'"):
        vulkan_from_environment()


def test_refusals() -> None:
    with pytest.raises(ConfigError, match="precision must be one of fp32, fp16, got 'bf16'"):
        NcnnEngine(tiny(), precision="bf16")
    with pytest.raises(ConfigError, match="runs x4 networks, this one is x2"):
        NcnnEngine(RRDBNet(num_block=1, num_feat=8, num_grow_ch=4, scale=2))
    engine = NcnnEngine(tiny(), vulkan=False)
    with pytest.raises(WeightsError, match="weights do not fit the ncnn engine.s network: missing keys"):
        engine.set_weights({key: value for key, value in tiny().state_dict().items() if "conv_last" not in key})


@pytest.fixture()
def tiny_run(tiny_weights: Path, tmp_path: Path) -> list[str]:
    write_image(tmp_path / "flat.png", np.full((24, 20, 3), 0.4, np.float32))
    return [str(tmp_path / "flat.png"), "--out", str(tmp_path / "sr.png"), "--checkpoint", str(tiny_weights),
            "--no-adapt", "--no-progress", "--device", "cpu", "--engine", "ncnn"]


def test_cli_runs_ncnn_and_says_so(tiny_run: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("F2N_NCNN_VULKAN", "0")
    result = CliRunner().invoke(cli.command, tiny_run, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "; engine ncnn fp32 (asked for with --engine)" in result.output.strip().splitlines()[-1]
    assert read_image(tmp_path / "sr.png").rgb.shape[:2] == (96, 80)


def test_cli_without_ncnn_is_one_line(tiny_run: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ncnn", None)  # `import ncnn` raises ImportError
    result = CliRunner().invoke(cli.command, tiny_run)
    assert result.exit_code == EngineUnavailableError.exit_code
    assert result.output.strip().splitlines()[-1].startswith("error: --engine ncnn needs the ncnn package")
    assert "Traceback" not in result.output
