"""Issue 26: containers and clusters mount model caches read-only. A run whose weights are all
in such a ``$F2N_HOME`` reads them and writes nothing there (an engine's graph goes to a temp
folder instead); ``--no-adapt`` does not even build the face detector."""

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from f2n.runtime import build, cli
from f2n.runtime.images import write_image

FAST = ["--tile", "32", "--tile-overlap", "8", "--no-progress", "--no-adapt"]


@contextmanager
def read_only(folder: Path) -> Iterator[Path]:
    """``folder`` made read-only for real: its mode for a user, the immutable flag for root (who
    writes into a 0o555 folder)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)
        return
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("running as root where chattr +i is unavailable: no way to make a folder read-only")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


@pytest.fixture
def read_only_home(isolated_f2n_home: Path) -> Iterator[Path]:
    with read_only(isolated_f2n_home):
        yield isolated_f2n_home


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "flat.png"
    write_image(path, np.full((20, 24, 3), 0.4, np.float32))
    return path


def _run(photo: Path, out: Path, weights: Path, engine: str) -> "CliRunner.invoke":
    return CliRunner().invoke(cli.command, [str(photo), "--out", str(out), "--checkpoint", str(weights),
                                            "--engine", engine, *FAST])


@pytest.mark.parametrize("engine", ["onnx", "torch"])
def test_a_read_only_home_is_read_and_never_written(read_only_home: Path, photo: Path, tmp_path: Path,
                                                    tiny_weights: Path, engine: str) -> None:
    before = sorted(read_only_home.rglob("*"))
    result = _run(photo, tmp_path / "out.png", tiny_weights, engine)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out.png").is_file()
    assert sorted(read_only_home.rglob("*")) == before


def test_a_graph_already_in_a_read_only_home_is_used(isolated_f2n_home: Path, photo: Path, tmp_path: Path,
                                                     tiny_weights: Path) -> None:
    assert _run(photo, tmp_path / "first.png", tiny_weights, "onnx").exit_code == 0
    graphs = list((isolated_f2n_home / "engines" / "onnx").glob("*.onnx"))
    assert len(graphs) == 1
    stamp = graphs[0].stat().st_mtime_ns
    with read_only(isolated_f2n_home):
        result = _run(photo, tmp_path / "second.png", tiny_weights, "onnx")
    assert result.exit_code == 0, result.output
    assert graphs[0].stat().st_mtime_ns == stamp


def test_no_adapt_builds_no_face_detector(tiny_weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_detector() -> None:
        raise AssertionError("--no-adapt built the face detector")

    monkeypatch.setattr(build, "default_detector", no_detector)
    pipeline = build.build_pipeline(tiny_weights, engine="torch", adapt_enabled=False)
    assert pipeline.config.adapt_enabled is False
