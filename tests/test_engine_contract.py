"""The engine contract (f2n.export.protocol.SREngine) as the pipeline uses it, on the real
OpenVINO engine: θ is handed over only when the engine does not hold it (an unadapted photo
after an unadapted one compiles nothing), an adapted photo's θ′ is replaced by θ again for the
next unadapted photo, ``threads`` reaches the engine, and threads sharing one pipeline get
each photo's own weights."""

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

pytest.importorskip("openvino")

from f2n.export.openvino_engine import OpenVinoEngine
from f2n.export.torch_engine import TorchEngine
from f2n.runtime import cli
from f2n.runtime.build import build_pipeline
from f2n.runtime.demo import demo_pair
from f2n.runtime.images import read_image, write_image
from f2n.runtime.options import PipelineOptions, pipeline_from_options
from f2n.weights import load_sr_network

FAST = ["--tile", "64", "--tile-overlap", "16", "--steps", "2", "--patches-per-face", "2", "--no-progress",
        "--engine", "openvino", "--precision", "fp32", "--prior", "numpy:copy"]


@pytest.fixture()
def compiles(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per compile of an OpenVINO model (the real compile runs)."""
    calls: list[int] = []
    real = OpenVinoEngine._compile

    def counted(self: OpenVinoEngine):
        calls.append(1)
        return real(self)

    monkeypatch.setattr(OpenVinoEngine, "_compile", counted)
    return calls


def _flat(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((40, 48, 3), dtype=np.float32)  # no face


def test_no_adapt_over_a_folder_compiles_once(tmp_path: Path, tiny_weights: Path, compiles: list[int]) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for seed in range(3):
        write_image(folder / f"flat{seed}.png", _flat(seed))
    result = CliRunner().invoke(cli.command, [str(folder), "--out", str(tmp_path / "out"), "--checkpoint",
                                              str(tiny_weights), "--no-adapt", *FAST], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert len(compiles) == 1  # the engine's own build; was 1 + one per photo


def test_the_base_weights_come_back_after_an_adapted_photo(tmp_path: Path, tiny_weights: Path,
                                                            compiles: list[int]) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    write_image(folder / "a_flat.png", _flat(0))
    write_image(folder / "b_astronaut.png", demo_pair()[1])  # one face: adapted
    write_image(folder / "c_flat.png", _flat(1))
    result = CliRunner().invoke(cli.command, [str(folder), "--out", str(tmp_path / "out"), "--checkpoint",
                                              str(tiny_weights), "--no-guard", *FAST], catch_exceptions=False)
    assert result.exit_code == 0 and "b_astronaut.png -> " in result.output and "adapted with faces" in result.output
    assert len(compiles) == 1 + 2  # the build, θ′ for the astronaut, θ again for c_flat
    alone = CliRunner().invoke(cli.command, [str(folder / "c_flat.png"), "--out", str(tmp_path / "alone.png"),
                                             "--checkpoint", str(tiny_weights), "--no-adapt", *FAST])
    assert alone.exit_code == 0, alone.output
    np.testing.assert_array_equal(read_image(tmp_path / "out" / "c_flat.png").rgb, read_image(tmp_path / "alone.png").rgb)


def test_threads_reach_the_engine(tiny_weights: Path) -> None:
    options = PipelineOptions(checkpoint=str(tiny_weights), engine="openvino", precision="fp32", no_adapt=True)
    pipeline = pipeline_from_options(options, threads=1)
    assert pipeline.engine._loaded.compiled.get_property("INFERENCE_NUM_THREADS") == 1


class SlowTorchEngine(TorchEngine):
    """The torch engine, pausing in every run: another thread gets the engine mid-photo if it may."""

    def run(self, tiles: torch.Tensor) -> torch.Tensor:
        time.sleep(0.02)
        return super().run(tiles)


def test_threads_sharing_a_pipeline_get_their_own_photos_weights(tiny_weights: Path) -> None:
    """Two photos at once through one pipeline and engine: adapted and unadapted results are each
    what the photo gets alone (the per-engine lock keeps weights and tiles of a photo together)."""
    loaded = load_sr_network(tiny_weights)
    pipeline = build_pipeline(loaded, engine=SlowTorchEngine(loaded.model), prior="numpy:copy", device="cpu",
                              requested={"steps": 2, "patches_per_face": 2, "guard": False}, tile=32, overlap=8)
    photos = {"face": demo_pair()[1], "flat": _flat(2)}
    alone = {name: pipeline.enhance(rgb).rgb for name, rgb in photos.items()}
    assert not np.array_equal(alone["face"], pipeline.upscale(photos["face"], pipeline.base_weights))  # θ′ ≠ θ
    mismatches: list[str] = []
    runs: list[str] = []

    def run(name: str) -> None:
        for _ in range(2):
            if not np.array_equal(pipeline.enhance(photos[name]).rgb, alone[name]):
                mismatches.append(name)
            runs.append(name)

    threads = [threading.Thread(target=run, args=(name,)) for name in photos]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(runs) == sorted(list(photos) * 2) and not mismatches
