"""f2n-adapt-and-run: folder runs, skipping, exit codes, one-line errors, reports.

A tiny RRDBNet checkpoint keeps these fast; ``--prior numpy:copy`` is an identity
"restorer" (the module:callable prior form), so no prior weights are needed."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import AOTI_BLOCKS, TinyRRDBNet, WriteWeights, seed_engine_cache

from f2n.errors import WeightsError
from f2n.runtime import cli
from f2n.eval.demo import demo_pair
from f2n.runtime.images import read_image, write_image

FAST = ["--tile", "64", "--tile-overlap", "16", "--steps", "2", "--patches-per-face", "2", "--no-progress"]


@pytest.fixture()
def photos(tmp_path: Path) -> Path:
    """A folder with the astronaut LQ (one face), a flat image (no face) and a corrupt PNG."""
    folder = tmp_path / "in"
    folder.mkdir()
    _, lq = demo_pair()
    write_image(folder / "astronaut.png", lq)
    write_image(folder / "flat.png", np.full((24, 20, 3), 0.4, np.float32))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "notes.txt").write_text("not an image, not listed")
    return folder


def invoke(*args: str) -> "CliRunner.invoke":
    return CliRunner().invoke(cli.command, [str(a) for a in args], catch_exceptions=False)


def test_folder_with_a_bad_file_is_a_partial_failure(photos: Path, tmp_path: Path, tiny_weights: Path) -> None:
    out, report = tmp_path / "out", tmp_path / "report.json"
    result = invoke(photos, "--out", out, "--checkpoint", tiny_weights, "--prior", "numpy:copy",
                    "--report", report, *FAST)
    assert result.exit_code == cli.EXIT_PARTIAL, result.output
    assert "failed" in result.output and "broken.png" in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in out.iterdir()) == ["astronaut.png", "flat.png"]
    assert read_image(out / "astronaut.png").rgb.shape == (256, 256, 3)

    data = json.loads(report.read_text())
    assert data["summary"] == {"ok": 2, "skipped": 0, "failed": 1, "adapted": 1}
    by_name = {Path(p["input"]).name: p for p in data["photos"]}
    assert by_name["broken.png"]["status"] == "failed" and "broken.png" in by_name["broken.png"]["reason"]
    assert by_name["flat.png"]["adapted"] is False and by_name["flat.png"]["reason"] == "no face detected"
    timings = by_name["astronaut.png"]["timings"]
    for stage in ("decode", "face.detect", "face.align", "face.restore", "face.mask", "adapt", "adapt.step_1",
                  "adapt.step_2", "set_weights", "tile", "encode", "total"):
        assert stage in timings, stage


def test_existing_outputs_are_skipped_unless_overwrite(photos: Path, tmp_path: Path, tiny_weights: Path) -> None:
    (photos / "broken.png").unlink()
    out = tmp_path / "out"
    out.mkdir()
    (out / "flat.png").write_bytes(b"keep me")
    args = [photos, "--out", out, "--checkpoint", tiny_weights, "--no-adapt", *FAST]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert (out / "flat.png").read_bytes() == b"keep me" and "skipped" in result.output
    assert (out / "astronaut.png").is_file()
    result = invoke(*args, "--overwrite")
    assert result.exit_code == 0 and read_image(out / "flat.png").rgb.shape == (96, 80, 3)


def test_all_failed_exits_2_and_leaves_no_partial_file(photos: Path, tmp_path: Path, tiny_weights: Path) -> None:
    out = tmp_path / "out"
    result = invoke(photos / "flat.png", photos / "broken.png", "--out", out, "--checkpoint", tiny_weights,
                    "--prior", "numpy:copy", "--require-adaptation", *FAST)
    assert result.exit_code == cli.EXIT_ALL_FAILED, result.output
    assert "cannot adapt: no face detected" in result.output
    assert not out.exists() or list(out.iterdir()) == []  # no output, no temp file


def test_single_file_out_and_saved_weights(photos: Path, tmp_path: Path, tiny_weights: Path) -> None:
    gt, _ = demo_pair()
    write_image(tmp_path / "gt.png", gt)
    out, weights = tmp_path / "sr.png", tmp_path / "theta.safetensors"
    result = invoke(photos / "astronaut.png", "--out", out, "--checkpoint", tiny_weights,
                    "--prior", f"oracle:{tmp_path / 'gt.png'}", "--save-weights", weights, "--paste-faces",
                    "--save-debug", *FAST)
    assert result.exit_code == 0, result.output
    assert out.is_file() and "adapted" in result.output
    assert any((tmp_path / "astronaut_debug").iterdir())
    from f2n.weights import load_sr_network

    reloaded = load_sr_network(weights).model.state_dict()
    base = load_sr_network(tiny_weights).model.state_dict()
    assert any(not torch.equal(reloaded[k], base[k]) for k in base)  # θ_n, not θ_0


@pytest.mark.parametrize(
    "args,code,message",
    [
        (["--tile", "8"], 5, "tile must be at least"),
        (["--steps", "-3"], 5, "steps must be >= 1"),  # was: ">= 0", though 0 is refused too
        (["--steps", "0"], 5, "steps must be >= 1"),  # was: the face stage ran, θ_0 reported as adapted
        (["--patches-per-face", "0"], 5, "patches per face must be >= 1"),
        (["--tile", "20", "--tile-overlap", "32"], 5, "tile overlap must be in [0, tile/2 = 10]"),
        (["--tile", "abc"], 5, "Invalid value for '--tile'"),  # was: click's 4-line usage text, exit 2
        (["--lr", "inf"], 5, "finite number > 0"),
        (["--checkpoint", "no-such-weights.pth"], 3, "neither a registry name"),
        (["--device", "cuda"], 4, "CUDA is not available"),
        (["--prior", "oracle:gt.png", "x.png"], 5, "exactly one input"),
        (["--no-adapt", "--require-adaptation"], 5, "contradict"),
        (["--no-adapt", "--save-weights", "theta.safetensors"], 5, "no θ_n to save"),  # was: silently none saved
        (["--prior-option", "w"], 5, "expected NAME=NUMBER"),
        (["--prior", "numpy:copy", "--prior-option", "w=0.7"], 5, "takes no options"),
    ],
)
def test_errors_are_one_line_with_their_exit_code(photos: Path, tiny_weights: Path, args: list[str],
                                                  code: int, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if "--device" in args and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    monkeypatch.chdir(photos)  # where the default output folder would go if an error came too late
    checkpoint = [] if "--checkpoint" in args else ["--checkpoint", tiny_weights]
    result = invoke(photos / "astronaut.png", *checkpoint, *args)
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_prior_that_cannot_load_falls_back_to_the_base_network(photos: Path, tmp_path: Path, tiny_weights: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def no_weights(spec: str, **_: object) -> None:
        raise WeightsError(f"GPEN weights for {spec} not installed")

    monkeypatch.setattr("f2n.runtime.face.prior.make_prior", no_weights)
    args = [photos / "astronaut.png", "--out", tmp_path / "o.png", "--checkpoint", tiny_weights, *FAST]
    result = invoke(*args, "--report", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    photo = json.loads((tmp_path / "r.json").read_text())["photos"][0]
    assert photo["adapted"] is False and "not installed" in photo["reason"]
    strict = invoke(*args, "--require-adaptation", "--overwrite")
    assert strict.exit_code == WeightsError.exit_code and "not installed" in strict.output


def test_a_prior_given_by_path_adapts_and_the_report_names_its_file_and_hash(
        photos: Path, tmp_path: Path, tiny_weights: Path) -> None:
    from f2n.fileio import sha256_file

    gpen = Path(__file__).parent / "data" / "gpen_official" / "gpen_cm1.pth"  # a GPEN made by the official code
    result = invoke(photos / "astronaut.png", "--out", tmp_path / "o.png", "--checkpoint", tiny_weights,
                    "--prior", gpen, "--report", tmp_path / "r.json", "--require-adaptation", *FAST)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    photo = report["photos"][0]
    assert photo["adapted"] is True
    provenance = json.dumps(report)
    assert str(gpen) in provenance and sha256_file(gpen) in provenance and '"architecture": "gpen"' in provenance


@pytest.mark.slow
def test_onnx_and_aoti_engines_take_the_adapted_weights(photos: Path, tmp_path: Path, tiny_rrdbnet: TinyRRDBNet,
                                                        write_weights: WriteWeights, tiny_aoti_package: Path,
                                                        isolated_f2n_home: Path) -> None:
    """--engine dispatches to f2n.export.engines; the ONNX Runtime and AOTInductor outputs
    after set_weights(θ_n) match the torch engine's on the same adapted weights (a tiny network
    whose AOTI package is compiled once per session and found in the engine cache)."""
    tiny_weights = write_weights(tiny_rrdbnet(num_block=AOTI_BLOCKS).state_dict(), tmp_path / "tiny.safetensors")
    seed_engine_cache(tiny_aoti_package, isolated_f2n_home)
    gt, _ = demo_pair()
    write_image(tmp_path / "gt.png", gt)
    outputs = {}
    for engine in ("torch", "onnx", "aoti"):
        outputs[engine] = tmp_path / f"{engine}.png"
        result = invoke(photos / "astronaut.png", "--out", outputs[engine], "--engine", engine, "--checkpoint",
                        tiny_weights, "--prior", f"oracle:{tmp_path / 'gt.png'}", "--precision", "fp32", *FAST,
                        "--steps", "5", "--optimizer", "adam", "--lr", "0.01")
        assert result.exit_code == 0 and "(adapted with faces;" in result.output, result.output
    torch_rgb, onnx_rgb = read_image(outputs["torch"]).rgb, read_image(outputs["onnx"]).rgb
    assert np.abs(torch_rgb - onnx_rgb).max() <= 2 / 255
    assert np.abs(torch_rgb - read_image(outputs["aoti"]).rgb).max() <= 2 / 255
    base = invoke(photos / "astronaut.png", "--out", tmp_path / "base.png", "--checkpoint", tiny_weights,
                  "--no-adapt", *FAST)
    assert base.exit_code == 0
    assert np.abs(read_image(tmp_path / "base.png").rgb - onnx_rgb).max() > 10 / 255  # θ_n really reached ORT


@pytest.mark.slow
def test_real_weights_end_to_end_on_a_small_crop(real_sr_weights: Path, tmp_path: Path) -> None:
    """Real-ESRGAN x4plus through the CLI on a 32 x 32 crop of the demo LQ (base network):
    the output must look like the input, only sharper (close to its bicubic x4)."""
    import cv2

    _, lq = demo_pair()
    crop = np.ascontiguousarray(lq[8:40, 16:48])
    write_image(tmp_path / "crop.png", crop)
    result = invoke(tmp_path / "crop.png", "--out", tmp_path / "sr.png", "--checkpoint", real_sr_weights,
                    "--no-adapt", "--no-progress", "--report", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    sr = read_image(tmp_path / "sr.png").rgb
    bicubic = np.clip(cv2.resize(crop, (128, 128), interpolation=cv2.INTER_CUBIC), 0, 1)
    assert sr.shape == (128, 128, 3)
    assert 10 * np.log10(1 / np.mean((sr - bicubic) ** 2)) > 22


def test_an_unexpected_error_fails_that_photo_only(tmp_path: Path) -> None:
    """A photo that breaks in an unforeseen way (not an F2NError) is reported as failed in
    one line, and the folder run goes on: process returns instead of raising."""

    def breaking_pipeline(source: Path, output: Path, **_: object) -> None:
        raise RuntimeError("decoder choked\nsecond line of detail")

    job = cli.Job(tmp_path / "a.png", tmp_path / "out" / "a.png", None, None)
    report = cli.process(breaking_pipeline, job, overwrite=False)
    assert report.status == "failed"
    assert report.reason == "unexpected RuntimeError: decoder choked"
    assert not job.output.exists()


@pytest.mark.parametrize(
    "make_args,message",
    [
        (lambda d: ["--out", d / "sr.gif"], "unsupported suffix '.gif'"),  # was: a folder named sr.gif
        (lambda d: ["--out", d / "existing"], "is an existing file"),  # was: unexpected FileExistsError
        (lambda d: ["--out", d / "existing" / "sub"], "cannot write to output folder"),
        (lambda d: [d / "in" / "flat.png", "--out", d / "sr.png"], "names one file, but there are 2"),
        (lambda d: ["--out", d / "in", "--overwrite"], "would replace the input photo"),  # was: input replaced
        (lambda d: [d / "in" / ".." / "in" / "astronaut.png"], "is given twice (also as"),
        (lambda d: ["--save-weights", d / "theta.bin"], "unsupported suffix '.bin'"),
        (lambda d: ["--report", d], "is a folder"),  # was: a traceback after every photo had run
    ],
)
def test_bad_output_paths_fail_before_any_photo(photos: Path, tmp_path: Path, tiny_weights: Path,
                                                make_args, message: str) -> None:
    (photos / "broken.png").unlink()
    (tmp_path / "existing").write_bytes(b"a file")
    before = {p: p.read_bytes() for p in photos.iterdir()}
    result = invoke(photos / "astronaut.png", *make_args(tmp_path), "--checkpoint", tiny_weights,
                    "--prior", "numpy:copy", *FAST)
    assert result.exit_code == 5, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output
    assert {p: p.read_bytes() for p in photos.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing", "in"]  # nothing created


def test_ctrl_c_while_writing_leaves_no_file_and_exits_130(photos: Path, tmp_path: Path, tiny_weights: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted_write(self: Path, data: bytes) -> None:
        with open(self, "wb") as handle:
            handle.write(data[: len(data) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_bytes", interrupted_write)
    out = tmp_path / "out"
    result = invoke(photos / "flat.png", "--out", out, "--checkpoint", tiny_weights, "--no-adapt", *FAST)
    assert result.exit_code == cli.EXIT_INTERRUPTED, result.output
    assert result.output.strip() == (f"interrupted: 0 earlier photo(s) written; in progress {photos / 'flat.png'}: "
                                     f"nothing of it written; not written {out / 'flat.png'}")
    assert list(out.iterdir()) == []  # no half-written PNG, no temp file


def test_ctrl_c_after_the_weights_says_they_were_written_and_the_image_was_not(
        photos: Path, tmp_path: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted_write(self: Path, data: bytes) -> None:  # the image's write; safetensors writes on its own
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_bytes", interrupted_write)
    out, weights = tmp_path / "out.png", tmp_path / "theta.safetensors"
    result = invoke(photos / "astronaut.png", "--out", out, "--save-weights", weights, "--checkpoint", tiny_weights,
                    "--prior", "numpy:copy", "--report", tmp_path / "r.json", *FAST)
    assert result.exit_code == cli.EXIT_INTERRUPTED, result.output
    assert result.output.strip().splitlines()[-1] == (
        f"interrupted: 0 earlier photo(s) written; in progress {photos / 'astronaut.png'}: written {weights}; "
        f"not written {out}; --report {tmp_path / 'r.json'} written with the 0 photo(s) finished before the stop")
    assert weights.is_file() and not out.exists()
    assert json.loads((tmp_path / "r.json").read_text())["photos"] == []  # issue 26: the report of a stop is written


def test_a_failed_weight_save_leaves_no_image(photos: Path, tmp_path: Path, tiny_weights: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """An image on disk makes the next run skip the photo: it must not exist without its θ′."""
    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("f2n.runtime.pipeline.save_safetensors_atomic", full_disk)
    out, weights = tmp_path / "out.png", tmp_path / "theta.safetensors"
    result = invoke(photos / "astronaut.png", "--out", out, "--save-weights", weights, "--checkpoint", tiny_weights,
                    "--prior", "numpy:copy", *FAST)
    assert result.exit_code == cli.EXIT_ALL_FAILED, result.output
    assert "No space left on device" in result.output
    assert not out.exists() and not weights.exists()


def test_oracle_prior_decodes_the_photo_once(photos: Path, tmp_path: Path, tiny_weights: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from f2n.runtime import images

    gt, _ = demo_pair()
    write_image(tmp_path / "gt.png", gt)
    opened: list[Path] = []
    check_size = images._check_size
    monkeypatch.setattr(images, "_check_size", lambda path, *args: opened.append(path) or check_size(path, *args))
    result = invoke(photos / "astronaut.png", "--out", tmp_path / "sr.png", "--checkpoint", tiny_weights,
                    "--prior", f"oracle:{tmp_path / 'gt.png'}", *FAST)
    assert result.exit_code == 0 and "(adapted with faces;" in result.output, result.output
    assert sorted(path.name for path in opened) == ["astronaut.png", "gt.png"]
