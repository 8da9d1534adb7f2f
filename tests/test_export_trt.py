"""TensorRT: the TensorRT-free decisions (profile, build recipe per installed version,
cache key and files, refit values and dtypes, fp16/bf16 graphs, reading TensorRT's
reports) always; build, refit parity and the negative control only where TensorRT and
a GPU exist. TensorRT 10 and 11 are told apart by their ``BuilderFlag`` members, so
the recipe is tested against stand-ins of those two enums (member lists from NVIDIA's
API reference and its 10.x -> 11.x migration page)."""

import enum
import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from f2n.errors import ConfigError, EngineUnavailableError, WeightsError
from f2n.export.fp32_mode import ieee_fp32
from f2n.export.names import map_initializers
from f2n.export.onnx_export import export_onnx, initializer_arrays
from f2n.export.onnx_precision import reduced_precision_graph
from f2n.export.trt_checks import (
    check_engine_precision,
    convolution_precisions,
    deserialisation_failure,
    trt_out_of_memory,
)
from f2n.export.trt_config import (
    TrtCacheKey,
    build_recipe,
    enum_names,
    read_plan,
    tile_profile,
    write_plan,
)
from f2n.export.trt_refit import read_refit_source, refit_names, refit_tensor, refit_values
from f2n.nets.rrdbnet import RRDBNet

HAS_TRT = importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available()
needs_trt = pytest.mark.skipif(not HAS_TRT, reason="TensorRT cannot be installed here")
TINY = dict(num_block=1, num_feat=8, num_grow_ch=4)

_TRT11_REMOVED = "FP16 INT8 FP8 BF16 INT4 FP4 OBEY_PRECISION_CONSTRAINTS PREFER_PRECISION_CONSTRAINTS DIRECT_IO".split()
_TRT10_FLAGS = (
    "FP16 INT8 DEBUG GPU_FALLBACK REFIT DISABLE_TIMING_CACHE TF32 SPARSE_WEIGHTS SAFETY_SCOPE OBEY_PRECISION_CONSTRAINTS "
    "PREFER_PRECISION_CONSTRAINTS DIRECT_IO REJECT_EMPTY_ALGORITHMS VERSION_COMPATIBLE EXCLUDE_LEAN_RUNTIME FP8 "
    "ERROR_ON_TIMING_CACHE_MISS BF16 DISABLE_COMPILATION_CACHE STRIP_PLAN REFIT_IDENTICAL WEIGHT_STREAMING INT4 "
    "REFIT_INDIVIDUAL STRICT_NANS MONITOR_MEMORY FP4 EDITABLE_TIMING_CACHE"
).split()
TRT10_BUILDER_FLAG = enum.Enum("BuilderFlag", _TRT10_FLAGS)
TRT11_BUILDER_FLAG = enum.Enum("BuilderFlag", [f for f in _TRT10_FLAGS if f not in _TRT11_REMOVED])
TRT10_NETWORK_FLAG = enum.Enum("NetworkDefinitionCreationFlag", "EXPLICIT_BATCH STRONGLY_TYPED PREFER_JIT_PYTHON_PLUGINS PREFER_AOT_PYTHON_PLUGINS")
TRT11_NETWORK_FLAG = enum.Enum("NetworkDefinitionCreationFlag", "PREFER_JIT_PYTHON_PLUGINS PREFER_AOT_PYTHON_PLUGINS")


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


def recipe(precision: str, version: int, **kwargs: bool):
    flags = {10: (TRT10_BUILDER_FLAG, TRT10_NETWORK_FLAG), 11: (TRT11_BUILDER_FLAG, TRT11_NETWORK_FLAG)}[version]
    return build_recipe(precision, *(enum_names(f) for f in flags), **kwargs)


@pytest.mark.parametrize("version", [10, 11])
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_recipe_sets_only_flags_the_installed_tensorrt_has(version: int, precision: str) -> None:
    """TensorRT 11 has no FP16/BF16 flags: getattr(trt.BuilderFlag, ...) on any flag of
    the recipe must succeed there (it raised AttributeError before)."""
    built = recipe(precision, version)
    members = enum_names({10: TRT10_BUILDER_FLAG, 11: TRT11_BUILDER_FLAG}[version])
    assert set(built.set_flags) | set(built.clear_flags) <= members
    assert "REFIT" in built.set_flags and "REFIT_IDENTICAL" not in built.set_flags  # per-photo weights change
    assert built.clear_flags == ("TF32",)  # fp32 means IEEE fp32 unless asked


def test_tensorrt_10_keeps_precision_flags_on_an_fp32_graph() -> None:
    assert recipe("fp16", 10).set_flags == ("REFIT", "FP16") and recipe("fp16", 10).graph_precision == "fp32"
    assert recipe("bf16", 10).set_flags == ("REFIT", "BF16") and not recipe("bf16", 10).strongly_typed


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_tensorrt_11_builds_reduced_precision_from_a_graph_in_that_dtype(precision: str) -> None:
    built = recipe(precision, 11)
    assert built.graph_precision == precision and built.set_flags == ("REFIT",)
    assert not built.strongly_typed  # no such creation flag to pass: 11 is always strongly typed
    assert recipe("fp32", 11).graph_precision == "fp32"


def test_tf32_is_an_explicit_option() -> None:
    assert recipe("fp32", 11, tf32=True).set_flags == ("REFIT", "TF32") and recipe("fp32", 11, tf32=True).clear_flags == ()
    with pytest.raises(ConfigError, match="no BuilderFlag.TF32"):
        build_recipe("fp32", {"REFIT"}, tf32=True)


def test_recipe_refuses_unknown_precision_and_tensorrt_without_refit() -> None:
    with pytest.raises(ConfigError, match="got 'int8'"):
        recipe("int8", 10)
    with pytest.raises(EngineUnavailableError, match="no BuilderFlag.REFIT"):
        build_recipe("fp32", {"FP16", "TF32"})


def test_cache_key_changes_with_each_field() -> None:
    stems = {key().file_stem()}
    for change in [dict(gpu="NVIDIA A100 sm80"), dict(tensorrt="10.10.0"), dict(precision="bf16"), dict(profile=tile_profile(256, 2)), dict(onnx_sha256="cd" * 32), dict(tf32=True)]:
        stems.add(key(**change).file_stem())
    assert len(stems) == 7
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
    state = adapted.state_dict()
    values = refit_values(source.names, source.constants, state)
    assert values.keys() == initializers.keys()  # constants the parser may mark refittable too
    for key_, name in source.names.canonical_to_onnx.items():
        assert torch.equal(values[name], state[key_])


@pytest.mark.parametrize(("prototype", "dtype"), [("FLOAT", torch.float32), ("HALF", torch.float16), ("BF16", torch.bfloat16)])
def test_refit_weights_take_the_engine_prototype_dtype(prototype: str, dtype: torch.dtype) -> None:
    """A strongly typed fp16/bf16 plan wants fp16/bf16 refit weights (numpy has no bf16:
    the tensor is passed by pointer), an fp32 one fp32."""
    weight = torch.randn(8, 3, 3, 3) * 3
    got = refit_tensor("conv_first.weight", weight, 216, prototype, "cpu")
    assert got.dtype == dtype and got.is_contiguous() and torch.equal(got, weight.to(dtype))
    assert torch.equal(refit_tensor("w", weight.permute(3, 2, 1, 0), 216, prototype, "cpu"), weight.permute(3, 2, 1, 0).contiguous().to(dtype))


def test_refit_weight_count_and_type_are_checked_before_tensorrt_rejects_them() -> None:
    weight = torch.zeros(8, 3, 3, 3)
    with pytest.raises(WeightsError, match="216 values, expected 217"):
        refit_tensor("conv_first.weight", weight, 217, "FLOAT", "cpu")
    with pytest.raises(WeightsError, match="has TensorRT type INT8"):
        refit_tensor("conv_first.weight", weight, 216, "INT8", "cpu")


def test_refit_sets_every_network_weight_and_refuses_frozen_ones(tmp_path: Path) -> None:
    base = tiny_net(0)
    graph = onnx.load(str(export_onnx(base, tmp_path / "tiny.onnx")))
    names = map_initializers(graph, base.state_dict().keys())
    available = initializer_arrays(graph).keys()
    engine_weights = [*names.onnx_to_canonical, "tmp_weight_0"]  # a parser-made weight we hold no value for
    assert refit_names(engine_weights, names, available) == sorted(names.onnx_to_canonical)
    with pytest.raises(WeightsError, match="1 network weights are not refittable .*conv_last.bias"):
        refit_names([n for n in engine_weights if n != "conv_last.bias"], names, available)


def test_fp16_graph_keeps_fp32_io_weight_names_and_runs_close_to_pytorch(tmp_path: Path) -> None:
    import onnxruntime as ort

    model = tiny_net(0)
    graph = onnx.load(str(export_onnx(model, tmp_path / "tiny.onnx")))
    half = reduced_precision_graph(graph, "fp16")
    onnx.checker.check_model(half, full_check=True)
    assert [i.type.tensor_type.elem_type for i in (*half.graph.input, *half.graph.output)] == [onnx.TensorProto.FLOAT] * 2
    names = map_initializers(half, model.state_dict().keys())  # refit names unchanged
    arrays = initializer_arrays(half)
    for key, name in names.canonical_to_onnx.items():
        np.testing.assert_array_equal(arrays[name], model.state_dict()[key].half().numpy())
    tiles = torch.rand(2, 3, 12, 10)
    got = ort.InferenceSession(half.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": tiles.numpy()})[0]
    with torch.inference_mode():
        want = model(tiles).numpy()
    assert got.dtype == np.float32 and 0 < np.abs(got - want).max() < 5e-3  # fp16 arithmetic: close, not equal


def test_bf16_graph_rounds_each_weight_once_from_fp32(tmp_path: Path) -> None:
    model = tiny_net(0)
    graph = onnx.load(str(export_onnx(model, tmp_path / "tiny.onnx")))
    bf16 = reduced_precision_graph(graph, "bf16")
    onnx.checker.check_model(bf16, full_check=True)  # bf16 Conv is valid from opset 22
    assert max(o.version for o in bf16.opset_import if o.domain in ("", "ai.onnx")) >= 22
    assert [i.type.tensor_type.elem_type for i in (*bf16.graph.input, *bf16.graph.output)] == [onnx.TensorProto.FLOAT] * 2
    source = read_refit_source(bf16, model.state_dict().keys())
    by_name = {init.name: init for init in bf16.graph.initializer}
    for key, name in source.names.canonical_to_onnx.items():
        assert by_name[name].data_type == onnx.TensorProto.BFLOAT16
        want = model.state_dict()[key].to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
        np.testing.assert_array_equal(np.frombuffer(by_name[name].raw_data, np.uint16).reshape(want.shape), want)


def test_reduced_precision_graph_refuses_fp32_and_int8(tmp_path: Path) -> None:
    graph = onnx.load(str(export_onnx(tiny_net(0), tmp_path / "tiny.onnx")))
    with pytest.raises(ConfigError, match="got 'int8'"):
        reduced_precision_graph(graph, "int8")


def _layer(kind: str, output: dict) -> dict:
    return {"Name": kind, "LayerType": kind, "Outputs": [output]}


def test_engine_precision_is_read_from_tensorrt_10_and_11_inspector_json() -> None:
    trt10 = {"Layers": [_layer("CaskConvolution", {"Format/Datatype": "Channel major FP16 format where channel % 8 == 0"})] * 3
             + [_layer("Reformat", {"Format/Datatype": "Row major linear FP32"})]}
    trt11 = {"Layers": [_layer("CaskConvolution", {"Format": "Channel major (kHWC8)", "DataType": "BFloat16"})] * 2
             + [_layer("CaskConvolution", {"Format": "Row major linear FP32 format (kLINEAR)", "DataType": "Float"})]}
    assert convolution_precisions(trt10) == {"fp16": 3}
    assert convolution_precisions(trt11) == {"bf16": 2, "fp32": 1}
    check_engine_precision(trt10, "fp16")
    check_engine_precision(trt11, "bf16")


def test_an_fp16_engine_built_as_fp32_is_refused() -> None:
    """The failure seen in the wild (rf-detr #1453): the flag path silently built fp32."""
    fp32_convs = {"Layers": [_layer("CaskConvolution", {"Format/Datatype": "Row major linear FP32"})] * 4}
    with pytest.raises(EngineUnavailableError, match="runs its 4 convolutions as 4 fp32, expected mostly fp16"):
        check_engine_precision(fp32_convs, "fp16")
    check_engine_precision(fp32_convs, "fp32")
    check_engine_precision({"Layers": ["conv1", "conv2"]}, "fp16")  # names only (no DETAILED verbosity): nothing to judge


@pytest.mark.parametrize(
    ("logged", "cause"),
    [
        (["The engine plan file is generated on an incompatible device, expecting compute 8.9 got compute 8.6, please rebuild."], "another GPU"),
        (["[stdArchiveReader.cpp::StdArchiveReader::40] Error Code 1: Serialization (Serialization assertion stdVersionRead == "
          "serializationVersion failed.Version tag does not match. Note: Current Version: 213, Serialized Engine Version: 232)"], "another TensorRT version"),
        (["The engine plan file is not compatible with this version of TensorRT, expecting library version 8.0.0 got 8.0.1, please rebuild."], "another TensorRT version"),
        (["Error Code 1: Serialization (Serialization assertion magicTagRead == kMAGIC_TAG failed.Magic tag does not match)"], "not a TensorRT plan"),
    ],
)
def test_deserialisation_failures_are_reported_by_cause(logged: list[str], cause: str) -> None:
    message = deserialisation_failure(1000, [*logged, "[runtime.cpp::deserializeCudaEngine::50] Error Code 4: Internal Error (Engine deserialization failed.)"])
    assert cause in message and "refittable" not in message and "\n" not in message
    assert deserialisation_failure(0, []) == "the TensorRT plan is empty"
    assert "odd failure" in deserialisation_failure(10, ["odd failure"])


def test_tensorrt_out_of_memory_is_recognised_from_its_log() -> None:
    assert trt_out_of_memory(["[virtualMemoryBuffer.cpp::resizePhysical::145] Error Code 2: OutOfMemory (no further information)"])
    assert trt_out_of_memory(["../rtSafe/safeRuntime.cpp (25) - Cuda Error in allocate: 2 (out of memory)"])
    assert not trt_out_of_memory(["IExecutionContext::setInputShape: Error Code 3: API Usage Error"])


@pytest.mark.skipif(HAS_TRT, reason="checks the message shown where TensorRT is missing")
def test_trt_engine_says_what_to_use_instead() -> None:
    from f2n.export.trt_engine import import_tensorrt

    with pytest.raises(EngineUnavailableError, match="use the onnx engine instead"):
        import_tensorrt()


@needs_trt
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_refit_matches_pytorch_and_wrong_weights_do_not(precision: str, tmp_path: Path) -> None:
    """Parity after a refit with θ_n, and the negative control: refitting other weights
    must give another answer (a refit that silently keeps old weights fails here)."""
    from f2n.export.trt_engine import load_trt_engine

    base, adapted = tiny_net(0), tiny_net(1)
    onnx_path = export_onnx(base, tmp_path / "tiny.onnx")
    engine = load_trt_engine(onnx_path, base.state_dict(), precision=precision, profile=tile_profile(32, 2), cache_dir=tmp_path)
    tiles = torch.rand(2, 3, 32, 24)
    tolerance = {"fp32": 1e-4, "fp16": 5e-3, "bf16": 3e-2}[precision]
    engine.set_weights(adapted.state_dict())
    with ieee_fp32(), torch.inference_mode():
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
    """Stands in for TensorRT in ``f2n-export --format trt``: the module offers the
    flag enums of TensorRT ``version``, the plan is the bytes of the graph it was handed,
    the engine runs PyTorch with the refitted weights plus ``error`` (to make
    verification fail on purpose)."""

    def __init__(self, error: float = 0.0, fail_build: bool = False, version: int = 11) -> None:
        self.error, self.fail_build = error, fail_build
        self.module = type("tensorrt", (), {
            "BuilderFlag": {10: TRT10_BUILDER_FLAG, 11: TRT11_BUILDER_FLAG}[version],
            "NetworkDefinitionCreationFlag": {10: TRT10_NETWORK_FLAG, 11: TRT11_NETWORK_FLAG}[version],
        })
        self.onnx_paths: list[Path] = []
        self.graphs: list[onnx.ModelProto] = []
        self.recipes: list[object] = []
        self.engines = 0

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from f2n.export import cli

        real_parser_graph = cli.parser_graph

        def parser_graph(onnx_path: Path, recipe: object) -> bytes:
            self.onnx_paths.append(onnx_path)
            return real_parser_graph(onnx_path, recipe)

        monkeypatch.setattr(cli, "import_tensorrt", lambda: self.module)
        monkeypatch.setattr(cli, "parser_graph", parser_graph)
        monkeypatch.setattr(cli, "build_plan", self.build_plan)
        monkeypatch.setattr(cli, "TrtEngine", self.engine)

    def build_plan(self, trt: object, graph: bytes, recipe: object, profile: object) -> bytes:
        assert trt is self.module
        self.graphs.append(onnx.load_from_string(graph))
        self.recipes.append(recipe)
        if self.fail_build:
            raise EngineUnavailableError("TensorRT failed to build an engine (fake)")
        return b"plan:" + graph[:64]

    def engine(self, plan: bytes, source: object, weights: dict[str, torch.Tensor], *, precision: str, profile: object) -> object:
        from f2n.export.torch_engine import TorchEngine

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
    assert "max abs difference TensorRT vs PyTorch fp32 (IEEE) on a 64x64 real crop = 0" in result.output


def weight_types(graph: onnx.ModelProto) -> set[int]:
    return {init.data_type for init in graph.graph.initializer if init.name.endswith(".weight")}


@pytest.mark.parametrize(("version", "graph_type", "flags"), [(11, onnx.TensorProto.FLOAT16, ("REFIT",)), (10, onnx.TensorProto.FLOAT, ("REFIT", "FP16"))])
def test_trt_fp16_export_parses_the_graph_the_installed_tensorrt_needs(
    tiny_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: int, graph_type: int, flags: tuple[str, ...]
) -> None:
    """TensorRT 11 gets an fp16 graph and no FP16 flag (the flag would be an
    AttributeError there); TensorRT 10 keeps its FP16 flag on the fp32 graph."""
    flow = FakeTrtFlow(version=version)
    flow.install(monkeypatch)
    result = export_trt(tiny_file, tmp_path / "tiny.plan", "--precision", "fp16")
    assert result.exit_code == 0, result.output
    assert weight_types(flow.graphs[0]) == {graph_type} and flow.recipes[0].set_flags == flags


def test_tf32_is_refused_outside_trt_fp32(tiny_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    FakeTrtFlow().install(monkeypatch)
    result = export_trt(tiny_file, tmp_path / "tiny.plan", "--precision", "fp16", "--tf32")
    assert result.exit_code == ConfigError.exit_code and "--tf32 applies to --format trt --precision fp32 only" in result.output


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
