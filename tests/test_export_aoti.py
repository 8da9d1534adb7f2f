"""AOTInductor package: every weight a swappable constant, parity before and after a
swap, dynamic batch/height/width, cache keys and cache rebuilds. One tiny-net compile
per session (conftest's ``tiny_aoti_package``, ~25-60 s on the shared 2-core CPU), hence slow."""

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from conftest import AOTI_BLOCKS, TinyRRDBNet  # 8 features: biases of 4-8 values, the ones Inductor inlines by default

from f2n.errors import ConfigError, WeightsError
from f2n.export import aoti
from f2n.export.aoti import (
    AotiEngine,
    compile_package,
    load_aoti_engine,
    package_fields,
    package_key,
)
from f2n.export.cache import is_trusted, record_artifact, sidecar_path
from f2n.nets import RRDBNet

TinyNet = Callable[[int], RRDBNet]


@pytest.fixture(scope="module")
def package(tiny_aoti_package: Path) -> Path:
    """``tiny_net(0)``'s package, as ``compile_package`` wrote it."""
    return tiny_aoti_package


@pytest.fixture(scope="module")
def tiny_net(tiny_rrdbnet: TinyRRDBNet) -> TinyNet:
    """``tiny_net(seed)``: a seeded tiny RRDBNet of the package's architecture, in eval mode."""
    return lambda seed: tiny_rrdbnet(seed, num_block=AOTI_BLOCKS).eval()


@pytest.mark.slow
def test_every_parameter_is_a_swappable_constant(tiny_net: TinyNet, package: Path) -> None:
    runner = torch._inductor.aoti_load_package(str(package))
    assert set(runner.get_constant_fqns()) == set(tiny_net(0).state_dict())


@pytest.mark.slow
def test_package_matches_pytorch_for_any_batch_and_size(tiny_net: TinyNet, package: Path) -> None:
    net = tiny_net(0)
    engine = AotiEngine(package, net.state_dict())
    for shape in [(1, 3, 16, 16), (3, 3, 13, 21), (5, 3, 2, 40)]:
        tiles = torch.rand(shape)
        with torch.inference_mode():
            torch.testing.assert_close(engine.run(tiles), net(tiles), atol=1e-5, rtol=0)


@pytest.mark.slow
def test_one_pixel_strips_run_with_their_edge_repeated(tiny_net: TinyNet, package: Path) -> None:
    # A 1xN photo gives 1-px tiles; the package takes sides >= 2 (was: the photo failed).
    net = tiny_net(0)
    engine = AotiEngine(package, net.state_dict())
    for shape in [(2, 3, 1, 9), (1, 3, 7, 1), (1, 3, 1, 1)]:
        tiles = torch.rand(shape)
        padded = torch.nn.functional.pad(tiles, (0, 2 - min(shape[3], 2), 0, 2 - min(shape[2], 2)), mode="replicate")
        with torch.inference_mode():
            want = net(padded)[:, :, : 4 * shape[2], : 4 * shape[3]]
        torch.testing.assert_close(engine.run(tiles), want, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_swapped_weights_match_pytorch_with_those_weights(tiny_net: TinyNet, package: Path) -> None:
    base, adapted = tiny_net(0), tiny_net(1)
    engine = AotiEngine(package, base.state_dict())
    tiles = torch.rand(2, 3, 18, 14)
    engine.set_weights(adapted.state_dict())
    with torch.inference_mode():
        want, old = adapted(tiles), base(tiles)
    got = engine.run(tiles)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert (got - old).abs().max() > 1e-2  # the swap changed the answer
    # The 3-value last bias (inlined without always_keep_tensor_constants) is swapped too.
    engine.set_weights(dict(adapted.state_dict()) | {"conv_last.bias": adapted.conv_last.bias + 0.25})
    torch.testing.assert_close(engine.run(tiles), want + 0.25, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_swap_rejects_weights_that_do_not_fit(tiny_net: TinyNet, package: Path) -> None:
    engine = AotiEngine(package, tiny_net(0).state_dict())
    weights = dict(tiny_net(0).state_dict()) | {"conv_hr.bias": torch.zeros(9)}
    with pytest.raises(WeightsError, match=r"^weights do not fit the AOTInductor package: wrong shapes \(given vs expected\) \(1\): conv_hr.bias \(9,\) vs \(8,\)$"):
        engine.set_weights(weights)
    with pytest.raises(ConfigError, match="up to 64 tiles"):
        engine.run(torch.rand(65, 3, 8, 8))


@pytest.mark.slow
def test_cache_compiles_once_and_rebuilds_a_damaged_or_foreign_package(tiny_net: TinyNet, package: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    compiled: list[Path] = []

    def fake_compile(model: torch.nn.Module, path: Path, **_: str) -> Path:
        compiled.append(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy(package, path))

    monkeypatch.setattr(aoti, "compile_package", fake_compile)
    net = tiny_net(0)
    load_aoti_engine(net)
    load_aoti_engine(net)
    assert len(compiled) == 1  # second call was a cache hit
    cached = compiled[0]
    cached.write_bytes(b"not a package")  # damaged: its bytes no longer hash to the sidecar's
    load_aoti_engine(net)
    sidecar = sidecar_path(cached)
    sidecar.unlink()  # a loadable package copied in by hand, without a sidecar
    load_aoti_engine(net)
    record_artifact(cached, {"precision": "bf16"})  # a sidecar of another key
    engine = load_aoti_engine(net)
    assert len(compiled) == 4
    assert is_trusted(cached, package_fields(net, device="cpu", precision="fp32"))
    tiles = torch.rand(1, 3, 8, 8)
    with torch.inference_mode():
        torch.testing.assert_close(engine.run(tiles), net(tiles), atol=1e-5, rtol=0)


def test_package_key_follows_what_the_code_depends_on(tiny_rrdbnet: TinyRRDBNet, tiny_net: TinyNet) -> None:
    net = tiny_net(0)
    key = package_key(net, device="cpu", precision="fp32")
    assert key == package_key(tiny_net(1), device="cpu", precision="fp32")  # weights are swapped, not compiled in
    assert key != package_key(net, device="cpu", precision="bf16")
    assert key != package_key(tiny_rrdbnet(num_block=AOTI_BLOCKS + 1), device="cpu", precision="fp32")
    with pytest.raises(ConfigError, match="got 'int8'"):
        compile_package(net, Path("unused.pt2"), precision="int8")
