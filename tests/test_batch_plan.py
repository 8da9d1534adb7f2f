"""f2n-batch without Ray: which photos an input names, where they go, their seeds, and
the manifest's reading and appending (a torn last line, a second driver, other options)."""

import json
from pathlib import Path

import numpy as np
import pytest

from f2n.errors import ConfigError
from f2n.runtime.batch.inputs import plan_photos
from f2n.runtime.batch.manifest import Manifest
from f2n.runtime.images import write_image
from f2n.runtime.jobs import Job, photo_seed


def make_photos(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        write_image(folder / name, np.zeros((4, 4, 3), np.float32))


def test_folder_glob_and_list_name_the_same_photos(tmp_path: Path) -> None:
    make_photos(tmp_path / "in", "a.png", "b.jpg")
    (tmp_path / "in" / "notes.txt").write_text("not a photo")
    (tmp_path / "list.txt").write_text("# scans\nin/b.jpg\n\nin/a.png\n")
    out = tmp_path / "out"
    by_folder = plan_photos((str(tmp_path / "in"),), out)
    by_glob = plan_photos((str(tmp_path / "in" / "*"),), out)
    by_list = plan_photos((str(tmp_path / "list.txt"),), out)
    assert [p.source for p in by_folder] == [str(tmp_path / "in" / n) for n in ("a.png", "b.jpg")]
    assert by_glob == by_folder and sorted(by_list, key=lambda p: p.source) == by_folder
    assert [p.output for p in by_folder] == [str(out / "a.png"), str(out / "b.png")]  # f2n-adapt-and-run's layout


def test_seed_follows_the_file_name_as_in_f2n_adapt_and_run(tmp_path: Path) -> None:
    make_photos(tmp_path / "x", "a.png")
    make_photos(tmp_path / "y", "a.png", "b.png")
    seeds = {Path(p.source).relative_to(tmp_path): p.seed for d in ("x", "y")
             for p in plan_photos((str(tmp_path / d),), tmp_path / f"out_{d}")}
    assert seeds[Path("x/a.png")] == seeds[Path("y/a.png")] != seeds[Path("y/b.png")]
    assert Job(tmp_path / "y/b.png", tmp_path / "o.png", None, None).seed == seeds[Path("y/b.png")]
    assert photo_seed("a.png") != photo_seed("a.jpg")


@pytest.mark.parametrize("inputs, message", [
    ((), "no input"),
    (("{d}/in", "{d}/in/a.png"), "given twice"),
    (("{d}/in", "{d}/other"), "would both be written"),
    (("{d}/in/*.gif",), "no images match"),
    (("{d}/empty.txt",), "is empty"),
])
def test_conflicts_are_one_config_error_before_any_work(tmp_path: Path, inputs: tuple[str, ...], message: str) -> None:
    make_photos(tmp_path / "in", "a.png")
    make_photos(tmp_path / "other", "a.jpg")
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(ConfigError, match=message):
        plan_photos(tuple(spec.format(d=tmp_path) for spec in inputs), tmp_path / "out")


def test_output_that_would_replace_its_input_is_refused(tmp_path: Path) -> None:
    make_photos(tmp_path, "a.png")
    with pytest.raises(ConfigError, match="would replace it"):
        plan_photos((str(tmp_path / "a.png"),), tmp_path)


def line(source: str, status: str = "ok") -> dict:
    return {"input": source, "output": None, "status": status, "adapted": False, "reason": ""}


def test_manifest_keeps_the_latest_line_and_survives_a_torn_one(tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    with Manifest(path, "opts") as manifest:
        manifest.append(line("a", "failed"))
        manifest.append(line("b"))
    with open(path, "a") as handle:
        handle.write('{"input": "c", "sta')  # a driver killed in the middle of a write
    with Manifest(path, "opts") as manifest:
        assert (manifest.status("a"), manifest.status("b"), manifest.status("c"), manifest.torn) == ("failed", "ok",
                                                                                                     None, 1)
        manifest.append(line("a"))
    lines = path.read_text().splitlines()
    assert json.loads(lines[-1])["input"] == "a" and lines[-2].startswith('{"input": "c"')  # the torn line ended
    with Manifest(path, "opts") as manifest:
        assert manifest.status("a") == "ok" and [r.input for r in manifest.reports(["b", "a", "z"])] == ["b", "a"]


def test_a_stop_landing_between_a_lines_write_and_its_record_still_reports_the_photo(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seen in test_batch: SIGTERM's exception raised inside ``append`` after the write, so the
    stop message counted one photo fewer than the manifest held (and the next run resumed)."""
    import f2n.runtime.batch.manifest as manifest_module

    def stopped(_fd: int) -> None:
        raise KeyboardInterrupt  # the signal handler's exception, at the fsync after the write

    with Manifest(tmp_path / "manifest.jsonl", "opts") as manifest:
        manifest.append(line("a"))
        monkeypatch.setattr(manifest_module.os, "fsync", stopped)
        with pytest.raises(KeyboardInterrupt):
            manifest.append(line("b"))
        assert [r.input for r in manifest.reports(["a", "b"])] == ["a"]  # what memory alone says
        manifest.reread()
        assert [r.input for r in manifest.reports(["a", "b"])] == ["a", "b"]  # what the next run resumes from


def test_manifest_refuses_a_second_driver_and_other_options(tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    with Manifest(path, "opts") as manifest:
        manifest.append(line("a"))
        with pytest.raises(ConfigError, match="in use by another"):
            Manifest(path, "opts")
    with pytest.raises(ConfigError, match="other pipeline options"):
        Manifest(path, "other")


def test_without_ray_one_line_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import sys

    from click.testing import CliRunner

    from f2n.runtime.batch import cli

    imports = "import sys, f2n.runtime.batch.cli; print('ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", imports], check=False, capture_output=True, text=True).stdout.strip() == "False"
    make_photos(tmp_path / "in", "a.png")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    result = CliRunner().invoke(cli.command, [str(tmp_path / "in"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 4, result.output
    assert result.output.startswith("error: f2n-batch needs Ray Data") and result.output.count("\n") == 1
    assert result.output.rstrip().endswith("pip install 'f2n[ray]'")
    assert not (tmp_path / "out").exists()  # nothing written before the check


def test_uris_are_listed_and_fetched_through_fsspec(tmp_path: Path) -> None:
    """fsspec's in-memory file system stands in for s3:// or gs:// (same fsspec calls)."""
    fsspec = pytest.importorskip("fsspec")
    from f2n.runtime.batch.storage import local_copy

    make_photos(tmp_path, "a.png")
    memory = fsspec.filesystem("memory")
    memory.pipe("/scans/a.png", (tmp_path / "a.png").read_bytes())
    memory.pipe("/scans/notes.txt", b"not a photo")
    by_folder = plan_photos(("memory://scans/",), tmp_path / "out")
    assert [(p.source, p.output) for p in by_folder] == [("memory:///scans/a.png", str(tmp_path / "out" / "a.png"))]
    assert plan_photos(("memory://scans/*.png",), tmp_path / "out") == by_folder
    with local_copy(by_folder[0].source) as path:
        assert path.name == "a.png" and path.read_bytes() == (tmp_path / "a.png").read_bytes()
    assert not path.exists()  # the temp copy is gone after the photo


def test_a_worker_reads_and_writes_fsspec_uris(tmp_path: Path, tiny_weights: Path) -> None:
    """Inputs, outputs and attempt counts on fsspec's in-memory file system (as on s3:// or gs://):
    the photo written there is byte-equal to f2n-adapt-and-run's local output; a photo that fails
    uploads nothing. (A Ray worker runs exactly this; the in-memory system is one process's, so no
    cluster here: tests/test_batch_cluster.py runs the cluster on file:// URIs.)"""
    fsspec = pytest.importorskip("fsspec")
    import torch
    from click.testing import CliRunner

    from f2n.runtime import cli as single
    from f2n.runtime.options import PipelineOptions
    from f2n.runtime.batch.worker import PhotoWorker

    rgb = np.random.default_rng(0).random((40, 56, 3), dtype=np.float32)
    write_image(tmp_path / "a.png", rgb)
    memory, root = fsspec.filesystem("memory"), f"/{tmp_path.name}"
    memory.pipe(f"{root}/in/a.png", (tmp_path / "a.png").read_bytes())
    memory.pipe(f"{root}/in/b.png", b"\x89PNG\r\n\x1a\n not really")
    photos = plan_photos((f"memory://{root}/in/",), f"memory://{root}/out/")
    assert [p.output for p in photos] == [f"memory://{root}/out/a.png", f"memory://{root}/out/b.png"]

    pipeline = ["--no-adapt", "--engine", "torch", "--tile", "32", "--tile-overlap", "8"]
    options = PipelineOptions(checkpoint=str(tiny_weights), engine="torch", no_adapt=True, tile=32, tile_overlap=8)
    worker = PhotoWorker(options, f"memory://{root}/out/.attempts", max_attempts=3, threads=torch.get_num_threads())
    good, bad = (worker.process(p.source, p.output, p.seed) for p in photos)
    assert (good["status"], good["output"], good["attempt"]) == ("ok", photos[0].output, 1)
    assert bad["status"] == "failed" and "b.png" in bad["reason"]
    assert memory.ls(f"{root}/out", detail=False) == [f"{root}/out/.attempts", f"{root}/out/a.png"]
    assert len(memory.ls(f"{root}/out/.attempts")) == 2  # one count per photo started

    reference = CliRunner().invoke(single.command, [str(tmp_path / "a.png"), "--out", str(tmp_path / "ref.png"),
                                                    "--checkpoint", str(tiny_weights), "--no-progress", *pipeline])
    assert reference.exit_code == 0, reference.output
    assert memory.cat_file(f"{root}/out/a.png") == (tmp_path / "ref.png").read_bytes()
    memory.rm(root, recursive=True)


def test_an_output_uri_needs_a_local_manifest(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from f2n.runtime.batch import cli

    make_photos(tmp_path / "in", "a.png")
    result = CliRunner().invoke(cli.command, [str(tmp_path / "in"), "--out", "memory://nowhere/out"])
    assert result.exit_code == ConfigError.exit_code
    assert result.output == ("error: --out memory://nowhere/out is a URI: give --manifest, a local file for the run's "
                             "manifest\n")
