"""f2n-batch on a local Ray instance (2 CPUs): each good photo written once and equal to
f2n-adapt-and-run's output (with a worker SIGKILLed mid-run), bad photos failed lines, a
re-run redoing nothing, and a driver stopped half-way (SIGTERM) resumed without redoing what
the manifest holds.

Photos are 128-px crops of the shared photos (one or two faces each), the SR network a
tiny random RRDBNet and the prior ``numpy:copy`` (an identity "restorer"): every photo is
really adapted (faces → patches → 2 inner steps) in about a second."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("ray.data", reason="f2n-batch needs Ray Data: pip install 'f2n[ray]'")
import ray

from f2n.runtime import cli as single
from f2n.runtime.batch import cli as batch
from f2n.runtime.images import image_files, read_image, write_image

PIPELINE = ["--prior", "numpy:copy", "--steps", "2", "--patches-per-face", "2", "--tile", "64", "--tile-overlap", "16"]
BAD = ("broken.png", "empty.jpg")


@pytest.fixture(scope="module")
def ray_cluster() -> str:
    # the workers' environment as every test's (conftest's isolated_f2n_home): auto follows its rule
    # without timing the engines, so a worker chooses the engine f2n-adapt-and-run chooses here
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"F2N_ENGINE_PROBE": "0", "F2N_NCNN_VULKAN": "0"}})
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def checkpoint(tiny_weights: Path) -> Path:
    return tiny_weights


@pytest.fixture(scope="module")
def crops(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> list[np.ndarray]:
    """The shared tuning photos, long side 128 px: a face of 20-40 px in each."""
    small = []
    for path in image_files(shared_data / "photos_tune"):
        rgb = read_image(path).rgb
        scale = 128 / max(rgb.shape[:2])
        size = (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale))
        small.append(np.clip(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), 0, 1))
    return small


def photo_folder(folder: Path, crops: list[np.ndarray], copies: int = 1, bad: bool = True) -> list[str]:
    """``copies`` mirrored variants of each crop (distinct photos), plus the bad files; the good names."""
    folder.mkdir()
    names = []
    for copy in range(copies):
        for index, rgb in enumerate(crops):
            names.append(f"photo{copy}_{index}.png")
            write_image(folder / names[-1], rgb if copy % 2 == 0 else rgb[:, ::-1])
    if bad:
        (folder / BAD[0]).write_bytes(b"\x89PNG\r\n\x1a\n not really")
        (folder / BAD[1]).write_bytes(b"")
    return names


def manifest_lines(out: Path) -> list[dict]:
    return [json.loads(text) for text in (out / batch.MANIFEST_NAME).read_text().splitlines()]


class WorkerKiller(threading.Thread):
    """SIGKILLs the worker (a process of this test's Ray instance) named by the first ok line."""

    def __init__(self, manifest: Path) -> None:
        super().__init__(daemon=True)
        self.manifest, self.pid = manifest, 0
        self.batch_ended = threading.Event()  # no clock: a loaded machine may take minutes to start Ray

    def run(self) -> None:
        while not self.batch_ended.is_set() and not self.pid:
            oks = [json.loads(t) for t in self.manifest.read_text().splitlines()] if self.manifest.exists() else []
            oks = [line for line in oks if line["status"] == "ok"]
            if oks:
                self.pid = int(oks[0]["worker"].rsplit(":", 1)[1])
                os.kill(self.pid, signal.SIGKILL)
            time.sleep(0.02)


def kill_a_worker_after_its_first_photo(manifest: Path) -> WorkerKiller:
    killer = WorkerKiller(manifest)
    killer.start()
    return killer


def run_batch(*args: object) -> "CliRunner.invoke":
    return CliRunner().invoke(batch.command, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.slow
def test_folder_written_once_equal_to_one_machine_and_rerun_redoes_nothing(
        ray_cluster: str, crops: list[np.ndarray], checkpoint: Path, tmp_path: Path) -> None:
    good = photo_folder(tmp_path / "in", crops)
    out, report = tmp_path / "out", tmp_path / "report.json"
    killed = kill_a_worker_after_its_first_photo(out / batch.MANIFEST_NAME)
    result = run_batch(tmp_path / "in", "--out", out, "--checkpoint", checkpoint, "--workers", 2,
                       "--report", report, *PIPELINE)
    killed.batch_ended.set()
    assert result.exit_code == single.EXIT_PARTIAL, result.output
    killed.join()
    assert killed.pid, "no worker was killed"  # Ray restarted it and gave its photo again

    # every good photo written once, byte for byte what f2n-adapt-and-run writes
    assert sorted(p.name for p in out.iterdir()) == sorted([*good, batch.MANIFEST_NAME])
    reference = tmp_path / "reference"
    single_report = tmp_path / "single.json"
    single_run = CliRunner().invoke(single.command, [str(tmp_path / "in"), "--out", str(reference), "--checkpoint",
                                                     str(checkpoint), "--no-progress", "--report", str(single_report),
                                                     *PIPELINE])
    assert single_run.exit_code == single.EXIT_PARTIAL, single_run.output
    for name in good:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name

    lines = manifest_lines(out)
    by_name = {Path(line["input"]).name: line for line in lines}
    assert len(lines) == len(by_name) == len(good) + len(BAD)
    assert all(by_name[name]["status"] == "ok" and by_name[name]["adapted"] for name in good)
    engine = json.loads(single_report.read_text())["engine"]  # what auto chose on one machine
    assert all(by_name[name]["engine"] == engine for name in good)  # each worker says what it ran
    for name in BAD:
        assert by_name[name]["status"] == "failed" and name in by_name[name]["reason"]
    assert json.loads(report.read_text())["summary"] == {"ok": len(good), "skipped": 0, "failed": 2,
                                                         "adapted": len(good)}

    # a re-run skips the finished photos (their files untouched) and tries only the bad ones again
    stamps = {name: (out / name).stat().st_mtime_ns for name in good}
    again = run_batch(tmp_path / "in", "--out", out, "--checkpoint", checkpoint, "--workers", 2, *PIPELINE)
    assert again.exit_code == single.EXIT_PARTIAL, again.output
    assert f"{len(good)} already finished, 2 to do" in again.output
    assert {name: (out / name).stat().st_mtime_ns for name in good} == stamps
    new_lines = manifest_lines(out)[len(lines):]
    assert sorted(Path(line["input"]).name for line in new_lines) == sorted(BAD)

    # other pipeline options are refused rather than mixed into the same folder
    other = run_batch(tmp_path / "in", "--out", out, "--checkpoint", checkpoint, *PIPELINE, "--steps", "3")
    assert other.exit_code == 5 and "other pipeline options" in other.output


@pytest.mark.slow
def test_stopped_driver_resumes_without_redoing_finished_photos(
        ray_cluster: str, crops: list[np.ndarray], checkpoint: Path, tmp_path: Path) -> None:
    good = photo_folder(tmp_path / "in", crops, copies=2, bad=False)
    out = tmp_path / "out"
    args = [str(tmp_path / "in"), "--out", str(out), "--checkpoint", str(checkpoint), "--workers", "2", *PIPELINE]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    driver = subprocess.Popen([sys.executable, "-c", "from f2n.runtime.batch.cli import main; main()",
                               *args, "--address", ray_cluster, "--report", str(tmp_path / "r.json")],
                              env=env, stderr=subprocess.PIPE, text=True)
    manifest = out / batch.MANIFEST_NAME
    deadline = time.monotonic() + 600  # generous: on a loaded machine Ray alone can take minutes to start
    while time.monotonic() < deadline and driver.poll() is None:
        if manifest.exists() and len(manifest.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    driver.send_signal(signal.SIGTERM)  # a scheduler's stop; a SIGKILLed worker is tested above
    _, errors = driver.communicate(timeout=60)
    before = manifest_lines(out)
    assert 3 <= len(before) < len(good), f"not stopped half-way ({len(before)} lines): {errors[-2000:]}"
    assert driver.returncode == single.EXIT_TERMINATED and "run again to resume" in errors, errors[-2000:]
    assert "Traceback" not in errors
    # issue 26: the report of the photos finished before the stop is written, and the line says so
    assert f"--report {tmp_path / 'r.json'} written with the {len(before)} photo(s)" in errors.splitlines()[-1]
    assert len(json.loads((tmp_path / "r.json").read_text())["photos"]) == len(before)

    resumed = run_batch(*args)
    assert resumed.exit_code == 0, resumed.output
    assert f"{len(before)} already finished, {len(good) - len(before)} to do" in resumed.output
    lines = manifest_lines(out)
    assert lines[:len(before)] == before
    assert sorted(Path(line["input"]).name for line in lines) == sorted(good)  # each photo finished once
    assert all(line["status"] == "ok" for line in lines)
    assert sorted(p.name for p in out.iterdir()) == sorted([*good, batch.MANIFEST_NAME])  # no temp files left

    # the next run has nothing to do (and starts no workers)
    again = run_batch(*args)
    assert again.exit_code == 0 and f"{len(good)} already finished, 0 to do" in again.output
    assert manifest_lines(out) == lines
