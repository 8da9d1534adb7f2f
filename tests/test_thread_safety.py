"""Issue 26: what the app and node packs need to run pipelines in threads. Writing a file must
not change the process's umask, and a seeded face prior must restore each photo the same way
whatever another thread's prior does meanwhile."""

import os
import stat
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from f2n.fileio import write_atomic, write_bytes_atomic
from f2n.runtime.prior_conventions import PriorConventions
from f2n.runtime.torch_prior import TorchFacePrior


def test_an_atomic_write_takes_the_umask_without_setting_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_umask = os.umask
    previous = real_umask(0o027)
    try:
        calls: list[int] = []
        monkeypatch.setattr(os, "umask", lambda mask: calls.append(mask) or real_umask(mask))
        write_bytes_atomic(tmp_path / "a.bin", b"x")

        def replace_with_private_file(temp: Path) -> None:  # as safetensors does
            temp.unlink()
            temp.write_bytes(b"y")
            temp.chmod(0o600)

        write_atomic(tmp_path / "b.bin", replace_with_private_file)
    finally:
        real_umask(previous)
    assert calls == [], "the umask is process-wide: setting it, even for a moment, races every other thread"
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "b.bin").stat().st_mode) == 0o640


class NoisyRestorer(nn.Module):
    """Draws from torch's global generator twice, yielding the GIL between the draws (as a network on
    a GPU, or a long CPU op, lets another thread run)."""

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        first = torch.randn(faces.shape)
        time.sleep(0.05)
        return (faces + 0.01 * first + 0.01 * torch.randn(faces.shape)).clamp(-1, 1)


def _prior() -> TorchFacePrior:
    conventions = PriorConventions("noisy", 8, lambda model, faces, options: model(faces))
    return TorchFacePrior(NoisyRestorer(), conventions, name="noisy", options={}, provenance={}, seed=3)


def test_seeded_priors_in_threads_restore_as_alone() -> None:
    faces = np.random.default_rng(0).random((1, 8, 8, 3), dtype=np.float32)
    affines = np.zeros((1, 2, 3), np.float32)
    alone = _prior().restore(faces, affines)
    results: dict[int, np.ndarray] = {}

    def run(index: int) -> None:
        results[index] = _prior().restore(faces, affines)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index in range(3):
        np.testing.assert_array_equal(results[index], alone)
