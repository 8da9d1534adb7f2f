"""TensorRT: the TensorRT-free decisions (profile, flags, cache key and files, refit
values, prototype checks) always; build, refit parity and the negative control only
where TensorRT and a GPU exist."""

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from f2n.errors import ConfigError, EngineUnavailableError, WeightsError
from f2n.export.names import map_initializers
from f2n.export.onnx_export import export_onnx, initializer_arrays
from f2n.export.trt_config import (
    TrtCacheKey,
    builder_flag_names,
    check_prototype,
    read_plan,
    read_refit_source,
    refit_arrays,
    refit_names,
    tile_profile,
    write_plan,
)
from f2n.nets.rrdbnet import RRDBNet

HAS_TRT = importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available()
needs_trt = pytest.mark.skipif(not HAS_TRT, reason="TensorRT cannot be installed here")
TINY = dict(num_block=1, num_feat=8, num_grow_ch=4)


def tiny_net(seed: int) -> RRDBNet:
    torch.manual_seed(seed)
    return RRDBNet(**TINY).eval()


def key(**changes: object) -> TrtCacheKey:
    fields = dict(gpu="NVIDIA H100 sm90", tensorrt="10.9.0", precision="fp16", profile=tile_profile(192, 2), onnx_sha256="ab" * 32)
    return TrtCacheKey(**(fields | changes))


def test_profile_covers_every_tile_the_tiler_sends() -> None:
    profile = tile_profile(192, batch_size=4)
    assert profile.opt == profile.max == (4, 3, 192, 192)  # tuned for full tiles
    assert profile.contains((4, 3, 192, 192)) and profile.contains((1, 3, 7, 192))  # last batch, edge of a small photo
    assert not profile.contains((5, 3, 192, 192)) and not profile.contains((1, 3, 193, 64))
    with pytest.raises(ConfigError, match="got tile 0"):
        tile_profile(0)


def test_builder_flags_always_refit_never_refit_identical() -> None:
    assert builder_flag_names("fp32") == ("REFIT",)
    assert builder_flag_names("fp16") == ("REFIT", "FP16")
    assert builder_flag_names("bf16") == ("REFIT", "BF16")
    with pytest.raises(ConfigError, match="got 'int8'"):
        builder_flag_names("int8")


def test_cache_key_changes_with_each_field() -> None:
    stems = {key().file_stem()}
    for change in [dict(gpu="NVIDIA A100 sm80"), dict(tensorrt="10.10.0"), dict(precision="bf16"), dict(profile=tile_profile(256, 2)), dict(onnx_sha256="cd" * 32)]:
        stems.add(key(**change).file_stem())
    assert len(stems) == 6
    assert key().file_stem() == key().file_stem()


def test_cached_plan_is_returned_only_for_its_own_key_and_bytes(tmp_path: Path) -> None:
    plan = b"serialized engine bytes"
    assert read_plan(tmp_path, key()) is None
    write_plan(tmp_path, key(), plan)
    assert read_plan(tmp_path, key()) == plan
    assert read_plan(tmp_path, key(precision="fp32")) is None  # another key is another file
    # A foreign plan copied over ours (same name, other bytes) is not trusted.
    (tmp_path / f"{key().file_stem()}.plan").write_bytes(b"plan from another GPU")
    assert read_plan(tmp_path, key()) is None
    # A sidecar whose key differs from the file name's (renamed file) is not trusted either.
    write_plan(tmp_path, key(precision="bf16"), plan)
    (tmp_path / f"{key(precision='bf16').file_stem()}.json").replace(tmp_path / f"{key().file_stem()}.json")
    (tmp_path / f"{key().file_stem()}.plan").write_bytes(plan)
    assert read_plan(tmp_path, key()) is None


def test_refit_values_cover_weights_and_other_initializers(tmp_path: Path) -> None:
    base, adapted = tiny_net(0), tiny_net(1)
    onnx_path = export_onnx(base, tmp_path / "tiny.onnx")
    source = read_refit_source(onnx_path, base.state_dict().keys())
    initializers = initializer_arrays(onnx.load(str(onnx_path)))
    assert source.shapes == {key: tuple(value.shape) for key, value in base.state_dict().items()}
    assert source.constants.keys() == initializers.keys() - source.names.onnx_to_canonical.keys()  # no weight values kept
    state = {k: v.numpy() for k, v in adapted.state_dict().items()}
    arrays = refit_arrays(source.names, source.constants, state)
    assert arrays.keys() == initializers.keys()  # constants the parser may mark refittable too
    for key_, name in source.names.canonical_to_onnx.items():
        np.testing.assert_array_equal(arrays[name], state[key_])
        assert arrays[name].flags.c_contiguous and arrays[name].dtype == np.float32


def test_refit_sets_every_network_weight_and_refuses_frozen_ones(tmp_path: Path) -> None:
    base = tiny_net(0)
    graph = onnx.load(str(export_onnx(base, tmp_path / "tiny.onnx")))
    names = map_initializers(graph, base.state_dict().keys())
    available = initializer_arrays(graph).keys()
    engine_weights = [*names.onnx_to_canonical, "tmp_weight_0"]  # a parser-made weight we hold no value for
    assert refit_names(engine_weights, names, available) == sorted(names.onnx_to_canonical)
    with pytest.raises(WeightsError, match="1 network weights are not refittable .*conv_last.bias"):
        refit_names([n for n in engine_weights if n != "conv_last.bias"], names, available)


def test_prototype_check_names_count_and_type() -> None:
    weight = np.zeros((8, 3, 3, 3), np.float32)
    check_prototype("conv_first.weight", weight, 216, "float32")
    with pytest.raises(WeightsError, match="216 x float32, expected 217 x float32"):
        check_prototype("conv_first.weight", weight, 217, "float32")
    with pytest.raises(WeightsError, match="expected 216 x float16"):
        check_prototype("conv_first.weight", weight, 216, "float16")


@pytest.mark.skipif(HAS_TRT, reason="checks the message shown where TensorRT is missing")
def test_trt_engine_says_what_to_use_instead() -> None:
    from f2n.export.trt_engine import import_tensorrt

    with pytest.raises(EngineUnavailableError, match="use the onnx engine instead"):
        import_tensorrt()


@needs_trt
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_refit_matches_pytorch_and_wrong_weights_do_not(precision: str, tmp_path: Path) -> None:
    """Parity after a refit with θ_n, and the negative control: refitting other weights
    must give another answer (a refit that silently keeps old weights fails here)."""
    from f2n.export.trt_engine import load_trt_engine

    base, adapted = tiny_net(0), tiny_net(1)
    onnx_path = export_onnx(base, tmp_path / "tiny.onnx")
    engine = load_trt_engine(onnx_path, base.state_dict(), precision=precision, profile=tile_profile(32, 2), cache_dir=tmp_path)
    tiles = torch.rand(2, 3, 32, 24)
    tolerance = 1e-4 if precision == "fp32" else 5e-3
    engine.set_weights(adapted.state_dict())
    with torch.inference_mode():
        want, other = adapted(tiles), base(tiles)
    got = engine.run(tiles)
    assert (got - want).abs().max() <= tolerance
    engine.set_weights(base.state_dict())  # the wrong weights for `want`
    assert (engine.run(tiles) - want).abs().max() > 10 * tolerance
    assert (engine.run(tiles) - other).abs().max() <= tolerance
    wrong = dict(adapted.state_dict()) | {"conv_first.weight": torch.zeros(8, 3, 5, 5)}
    with pytest.raises(WeightsError, match=r"^weights do not fit the TensorRT engine: wrong shapes \(given vs expected\) \(1\): conv_first.weight"):
        engine.set_weights(wrong)


@needs_trt
def test_cached_plan_is_reused_and_profile_enforced(tmp_path: Path) -> None:
    from f2n.export.trt_engine import load_trt_engine

    base = tiny_net(0)
    onnx_path = export_onnx(base, tmp_path / "tiny.onnx")
    load_trt_engine(onnx_path, base.state_dict(), precision="fp32", profile=tile_profile(32), cache_dir=tmp_path)
    plans = sorted(tmp_path.glob("*.plan"))
    engine = load_trt_engine(onnx_path, base.state_dict(), precision="fp32", profile=tile_profile(32), cache_dir=tmp_path)
    assert sorted(tmp_path.glob("*.plan")) == plans and len(plans) == 1
    with pytest.raises(ConfigError, match="outside the TensorRT profile"):
        engine.run(torch.rand(1, 3, 33, 16))


class FakeTrtFlow:
    """Stands in for TensorRT in ``f2n-export --format trt``: the plan is the ONNX
    bytes it was built from, the engine runs PyTorch with the refitted weights plus
    ``error`` (to make verification fail on purpose)."""

    def __init__(self, error: float = 0.0, fail_build: bool = False) -> None:
        self.error, self.fail_build = error, fail_build
        self.onnx_paths: list[Path] = []
        self.engines = 0

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from f2n.export import cli

        monkeypatch.setattr(cli, "import_tensorrt", lambda: "fake tensorrt")
        monkeypatch.setattr(cli, "build_plan", self.build_plan)
        monkeypatch.setattr(cli, "TrtEngine", self.engine)

    def build_plan(self, trt: str, onnx_path: Path, precision: str, profile: object) -> bytes:
        assert trt == "fake tensorrt" and onnx_path.is_file()
        self.onnx_paths.append(onnx_path)
        if self.fail_build:
            raise EngineUnavailableError("TensorRT failed to build an engine (fake)")
        return b"plan:" + onnx_path.read_bytes()[:64]

    def engine(self, plan: bytes, source: object, weights: dict[str, torch.Tensor], *, precision: str, profile: object) -> object:
        from f2n.runtime.torch_engine import TorchEngine

        assert plan.startswith(b"plan:") and set(source.shapes) == set(weights)
        self.engines += 1
        net = RRDBNet(**TINY)
        net.load_state_dict(weights)
        inner, error = TorchEngine(net), self.error

        class Engine:
            name = "trt"

            def run(self, tiles: torch.Tensor) -> torch.Tensor:
                return inner.run(tiles) + error

        return Engine()


@pytest.fixture
def tiny_file(tmp_path: Path) -> Path:
    from safetensors.torch import save_file

    save_file(tiny_net(0).state_dict(), str(tmp_path / "tiny.safetensors"))
    return tmp_path / "tiny.safetensors"


def export_trt(tiny_file: Path, out: Path, *extra: str) -> object:
    from click.testing import CliRunner

    from f2n.export.cli import main

    return CliRunner().invoke(main, ["--weights", str(tiny_file), "--format", "trt", "--device", "cuda", "--out", str(out), *extra])


def test_trt_export_builds_from_one_temporary_onnx_and_verifies_the_plan(tiny_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flow = FakeTrtFlow()
    flow.install(monkeypatch)
    out = tmp_path / "out" / "tiny.plan"
    result = export_trt(tiny_file, out)
    assert result.exit_code == 0, result.output
    assert len(flow.onnx_paths) == 1 and not flow.onnx_paths[0].exists()  # one export, temporary
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny.plan"]  # no side .onnx
    assert out.read_bytes().startswith(b"plan:") and flow.engines == 1
    assert "max abs difference TensorRT vs PyTorch fp32 on a 64x64 real crop = 0" in result.output


def test_trt_export_without_verify_builds_no_engine(tiny_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flow = FakeTrtFlow()
    flow.install(monkeypatch)
    result = export_trt(tiny_file, tmp_path / "tiny.plan", "--no-verify")
    assert result.exit_code == 0 and flow.engines == 0 and "verification" not in result.output


def test_trt_export_fails_verification_in_fp32(tiny_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    FakeTrtFlow(error=1e-2).install(monkeypatch)
    result = export_trt(tiny_file, tmp_path / "tiny.plan", "--precision", "fp32")
    assert result.exit_code == 6 and "TensorRT differs from PyTorch by 0.01, expected <= 0.0001 in fp32" in result.output


def test_failed_trt_build_leaves_no_file(tiny_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flow = FakeTrtFlow(fail_build=True)
    flow.install(monkeypatch)
    out = tmp_path / "out"
    out.mkdir()
    result = export_trt(tiny_file, out / "tiny.plan")
    assert result.exit_code == EngineUnavailableError.exit_code and "failed to build" in result.output
    assert list(out.iterdir()) == [] and not flow.onnx_paths[0].exists()
