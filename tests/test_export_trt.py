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
    graph = onnx.load(str(export_onnx(base, tmp_path / "tiny.onnx")))
    names = map_initializers(graph, base.state_dict().keys())
    initializers = initializer_arrays(graph)
    state = {k: v.numpy() for k, v in adapted.state_dict().items()}
    arrays = refit_arrays(names, initializers, state)
    assert arrays.keys() == initializers.keys()  # constants the parser may mark refittable too
    for key_, name in names.canonical_to_onnx.items():
        np.testing.assert_array_equal(arrays[name], state[key_])
        assert arrays[name].flags.c_contiguous and arrays[name].dtype == np.float32
    with pytest.raises(WeightsError, match="lack 1 network weights"):
        refit_arrays(names, initializers, {k: v for k, v in state.items() if k != "conv_up1.bias"})


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
    from f2n.export.trt_engine import TrtEngine

    base, adapted = tiny_net(0), tiny_net(1)
    onnx_path = export_onnx(base, tmp_path / "tiny.onnx")
    engine = TrtEngine(onnx_path, base.state_dict(), precision=precision, profile=tile_profile(32, 2), cache_dir=tmp_path)
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


@needs_trt
def test_cached_plan_is_reused_and_profile_enforced(tmp_path: Path) -> None:
    from f2n.export.trt_engine import TrtEngine

    base = tiny_net(0)
    onnx_path = export_onnx(base, tmp_path / "tiny.onnx")
    TrtEngine(onnx_path, base.state_dict(), precision="fp32", profile=tile_profile(32), cache_dir=tmp_path)
    plans = sorted(tmp_path.glob("*.plan"))
    engine = TrtEngine(onnx_path, base.state_dict(), precision="fp32", profile=tile_profile(32), cache_dir=tmp_path)
    assert sorted(tmp_path.glob("*.plan")) == plans and len(plans) == 1
    with pytest.raises(ConfigError, match="outside the TensorRT profile"):
        engine.run(torch.rand(1, 3, 33, 16))
