"""Issue 20: what a hostile-input audit broke, one test per case. Each failure must be one
line with its documented exit code (or, for a photo that cannot be adapted soundly, the base
network with the reason), never a traceback, a misleading message or invalid JSON."""

import errno
import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import TinyRRDBNet
from PIL import Image, ImageCms
from safetensors.torch import save_file

from f2n.errors import ConfigError, WeightsError
from f2n.fileio import STALE_TEMP_SECONDS
from f2n.runtime import cli
from f2n.runtime.demo import demo_pair
from f2n.runtime.face_prior import make_prior
from f2n.runtime.images import read_image, write_image
from f2n.runtime.report import RunReport, write_report_json
from f2n.weights import add_weight, load_sr_network, load_state_dict_file, weight_path
from f2n.weights.cli import main as models_cli

FAST = ["--tile", "64", "--tile-overlap", "16", "--steps", "2", "--patches-per-face", "2", "--no-progress"]

PRIORS = '''
import time
from pathlib import Path
import numpy as np

def nan(faces):
    return np.full_like(faces, np.nan)

def bytes_range(faces):
    return faces * 255

def wrong_shape(faces):
    return faces[:, ::2, ::2]

def slow(faces):  # says it started, then hangs: the SIGTERM test stops it here
    Path(__file__).with_name("prior_started").write_text("yes")
    time.sleep(120)
    return faces
'''


@pytest.fixture(scope="module")
def prior_modules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of module:callable priors: good-looking code with bad output, and broken modules."""
    folder = tmp_path_factory.mktemp("priors")
    (folder / "hostile_priors.py").write_text(PRIORS)
    (folder / "raises_at_import.py").write_text("raise RuntimeError('no licence server')\n")
    (folder / "syntax_error.py").write_text("def restore(faces:\n")
    return folder


@pytest.fixture(scope="module")
def tiny_checkpoint(tiny_weights: Path) -> Path:
    return tiny_weights


@pytest.fixture()
def astronaut(tmp_path: Path) -> Path:
    path = tmp_path / "astronaut.png"
    write_image(path, demo_pair()[1])
    return path


def invoke(*args: object, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli.command, [str(a) for a in args], catch_exceptions=False, env=env)


def strict_json(path: Path) -> dict:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{path} holds {constant}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


# 1. a full disk while writing --report
def test_full_disk_at_the_report_is_one_line(astronaut: Path, tmp_path: Path, tiny_checkpoint: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from f2n.runtime import report as report_module

    def full_disk(path: Path, text: str) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(report_module, "write_text_atomic", full_disk)
    out = tmp_path / "sr.png"
    result = invoke(astronaut, "--out", out, "--checkpoint", tiny_checkpoint, "--no-adapt",
                    "--report", tmp_path / "report.json", *FAST)
    assert result.exit_code == ConfigError.exit_code, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: cannot write the report") and "No space left on device" in last
    assert "Traceback" not in result.output and out.is_file()


# 2. an unusable $F2N_HOME
def test_f2n_home_that_is_a_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          real_sr_weights: Path) -> None:
    home = tmp_path / "home_is_a_file"
    home.write_text("not a folder")
    monkeypatch.setenv("F2N_HOME", str(home))
    with pytest.raises(ConfigError, match=rf"{home} is not usable .*set F2N_HOME to a writable folder"):
        weight_path("realesrgan-x4plus")  # first use: builds the x4plus file into the cache
    result = CliRunner().invoke(models_cli, ["add", "realesrgan-x4plus", str(real_sr_weights)])
    assert result.exit_code == ConfigError.exit_code
    assert result.output.startswith("error: the f2n cache folder") and len(result.output.splitlines()) == 1


def test_read_only_f2n_home_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, real_sr_weights: Path) -> None:
    home = tmp_path / "read_only"
    home.mkdir()
    if os.geteuid() == 0:  # root writes into a 0o555 folder: make the file system say read-only instead
        import tempfile

        def read_only(*args: object, **kwargs: object) -> None:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))

        monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    else:
        home.chmod(0o555)
    monkeypatch.setenv("F2N_HOME", str(home))
    with pytest.raises(ConfigError, match=rf"{home} is not usable \(Read-only file system|Permission denied"):
        add_weight("realesrgan-x4plus", real_sr_weights)
    assert list(home.iterdir()) == []


# 3. a module:callable prior whose module fails at import
@pytest.mark.parametrize("module,kind", [("raises_at_import", "RuntimeError: no licence server"),
                                         ("syntax_error", "SyntaxError")])
def test_prior_module_failing_at_import_is_a_config_error(prior_modules: Path, monkeypatch: pytest.MonkeyPatch,
                                                          module: str, kind: str) -> None:
    monkeypatch.syspath_prepend(str(prior_modules))
    with pytest.raises(ConfigError, match=f"cannot load face prior '{module}:restore': {kind}"):
        make_prior(f"{module}:restore")


# 4. a prior returning NaN, 0-255 or a wrong shape; the report is strict JSON
@pytest.mark.parametrize("prior,reason", [("nan", "NaN/Inf value"), ("bytes_range", "expected [0, 1]"),
                                          ("wrong_shape", "returned shape")])
def test_a_bad_prior_output_is_not_called_adapted(prior_modules: Path, astronaut: Path, tmp_path: Path,
                                                  tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch,
                                                  prior: str, reason: str) -> None:
    monkeypatch.syspath_prepend(str(prior_modules))
    report = tmp_path / "report.json"
    result = invoke(astronaut, "--out", tmp_path / "sr.png", "--checkpoint", tiny_checkpoint,
                    "--prior", f"hostile_priors:{prior}", "--report", report, *FAST)
    assert result.exit_code == 0, result.output
    (photo,) = strict_json(report)["photos"]
    assert photo["adapted"] is False and photo["faces_used"] == 1
    assert photo["reason"].startswith(f"face prior hostile_priors:{prior} ") and reason in photo["reason"]
    required = invoke(astronaut, "--out", tmp_path / "sr2.png", "--checkpoint", tiny_checkpoint,
                      "--prior", f"hostile_priors:{prior}", "--require-adaptation", *FAST)
    assert required.exit_code == cli.EXIT_ALL_FAILED and reason in required.output


def test_report_json_is_strict_even_with_nan(tmp_path: Path) -> None:
    photo = RunReport("a.png", "b.png", "ok", True, losses=(0.5, float("nan")), timings={"tile": np.float32("inf")})
    write_report_json(tmp_path / "r.json", [photo])
    (written,) = strict_json(tmp_path / "r.json")["photos"]
    assert written["losses"] == [0.5, None] and written["timings"] == {"tile": None}


# 5. NaN weights at load; a divergent adaptation
@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_nan_in_a_weight_file_is_refused_at_load_naming_the_tensor(tiny_rrdbnet: TinyRRDBNet, tmp_path: Path,
                                                                   suffix: str) -> None:
    state = tiny_rrdbnet().state_dict()
    state["body.0.rdb2.conv3.weight"][0, 0, 1, 1] = float("inf")
    path = tmp_path / f"bad{suffix}"
    if suffix == ".pth":
        torch.save(state, path)
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    with pytest.raises(WeightsError, match=r"tensor body\.0\.rdb2\.conv3\.weight holds 1 NaN/Inf value"):
        load_sr_network(path)
    result = invoke(tmp_path / "photo.png", "--checkpoint", path)
    assert result.exit_code == WeightsError.exit_code and "body.0.rdb2.conv3.weight" in result.output


def test_divergent_adaptation_falls_back_to_the_base_weights(astronaut: Path, tmp_path: Path,
                                                             tiny_checkpoint: Path) -> None:
    report = tmp_path / "report.json"
    diverged = invoke(astronaut, "--out", tmp_path / "diverged.png", "--checkpoint", tiny_checkpoint,
                      "--prior", "numpy:copy", "--report", report, *FAST, "--lr", "1e30", "--optimizer", "sgd",
                      "--no-guard")  # with the guard on, the held-out check refuses θ′ before this one
    assert diverged.exit_code == 0, diverged.output
    (photo,) = strict_json(report)["photos"]
    assert photo["adapted"] is False and "the adaptation diverged" in photo["reason"]
    base = invoke(astronaut, "--out", tmp_path / "base.png", "--checkpoint", tiny_checkpoint, "--no-adapt", *FAST)
    assert base.exit_code == 0
    np.testing.assert_array_equal(read_image(tmp_path / "diverged.png").rgb, read_image(tmp_path / "base.png").rgb)


# 6. a malicious pickle: refused for the right reason, without the unsafe advice
class WritesFileWhenUnpickled:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.write_text, (self.target, "code ran"))


def test_malicious_pickle_is_refused_because_it_needs_code_execution(tmp_path: Path) -> None:
    marker, weights = tmp_path / "marker.txt", tmp_path / "evil.pth"
    torch.save({"conv_first.weight": torch.zeros(1), "payload": WritesFileWhenUnpickled(marker)}, weights)
    with pytest.raises(WeightsError) as refused:
        load_state_dict_file(weights)
    message = str(refused.value)
    assert "needs code execution to load (it calls getattr)" in message  # the payload's first step
    assert "weights_only" not in message and "corrupt" not in message
    assert not marker.exists()


def test_upper_case_safetensors_suffix_is_read_as_safetensors(tmp_path: Path) -> None:
    path = tmp_path / "WEIGHTS.SAFETENSORS"
    save_file({"a": torch.arange(3.0)}, str(path))
    assert torch.equal(load_state_dict_file(path)["a"], torch.arange(3.0))


# 7. 16-bit gray+alpha stays gray; an ICC profile must fit the output's colour space
def png_16bit_gray_alpha(path: Path, gray: np.ndarray, alpha: np.ndarray) -> None:
    """PNG colour type 4 (gray+alpha) at 16 bits, written chunk by chunk from the PNG spec
    (Pillow cannot write it)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    height, width = gray.shape
    pixels = np.stack([gray, alpha], axis=-1).astype(">u2")
    raw = b"".join(b"\x00" + pixels[y].tobytes() for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 16, 4, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))


def test_16bit_gray_alpha_stays_gray(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    gray, alpha = rng.integers(0, 65536, (12, 10)), rng.integers(0, 65536, (12, 10))
    png_16bit_gray_alpha(tmp_path / "la16.png", gray, alpha)
    decoded = read_image(tmp_path / "la16.png")
    assert decoded.was_grayscale and decoded.bit_depth == 16
    np.testing.assert_allclose(decoded.rgb[..., 0], gray / 65535, atol=1e-6)
    np.testing.assert_allclose(decoded.alpha, alpha / 65535, atol=1e-6)
    # An RGB result (channels that differ, as an SR network's do) is written back as gray.
    tinted = decoded.rgb * np.array([1.0, 0.9, 0.8], np.float32)
    write_image(tmp_path / "out.png", tinted, alpha=decoded.alpha, bit_depth=16, grayscale=decoded.was_grayscale)
    written = read_image(tmp_path / "out.png")
    assert written.was_grayscale and np.ptp(written.rgb, axis=2).max() == 0


def test_a_cmyk_icc_profile_is_not_copied_onto_the_rgb_output(tmp_path: Path) -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    cmyk = srgb[:16] + b"CMYK" + srgb[20:]  # an ICC header that declares CMYK data (no CMYK profile ships here)
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", icc_profile=cmyk)
    decoded = read_image(tmp_path / "cmyk.jpg")
    assert decoded.icc_profile is None
    assert decoded.warnings == ("ICC profile dropped: it describes CMYK, the output is RGB",)
    Image.new("RGB", (8, 8)).save(tmp_path / "rgb.png", icc_profile=srgb)
    kept = read_image(tmp_path / "rgb.png")
    assert kept.icc_profile == srgb and kept.warnings == ()


# 8. SIGTERM; stale temp files
def test_sigterm_mid_run_exits_143_with_one_line_and_no_output(prior_modules: Path, astronaut: Path,
                                                               tmp_path: Path, tiny_checkpoint: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(prior_modules), os.environ.get("PYTHONPATH", "")])}
    (prior_modules / "prior_started").unlink(missing_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-c", "from f2n.console import adapt_and_run; adapt_and_run()", str(astronaut),
         "--out", str(out),
         "--checkpoint", str(tiny_checkpoint), "--prior", "hostile_priors:slow", "--report", str(tmp_path / "r.json"),
         *FAST],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300  # a loaded CI machine imports torch slowly
        while not (prior_modules / "prior_started").exists():  # mid-run: the face stage is restoring
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == cli.EXIT_TERMINATED == 143, stderr
    # Issue 26: the report is written (the photos finished before the stop) and the line says what was.
    assert stderr.strip() == (f"terminated (SIGTERM): 0 earlier photo(s) written; in progress {astronaut}: "
                              f"nothing of it written; not written {out / astronaut.name}; "
                              f"--report {tmp_path / 'r.json'} written with the 0 photo(s) finished before the stop")
    assert not out.exists() or list(out.iterdir()) == []
    assert json.loads((tmp_path / "r.json").read_text())["summary"]["ok"] == 0


def test_a_run_removes_stale_f2n_temp_files_only(astronaut: Path, tmp_path: Path, tiny_checkpoint: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    stale, fresh = out / ".astronaut.png.f2n-k3j_9xq2.tmp", out / ".other.png.f2n-abcdefgh.tmp"
    foreign = out / ".astronaut.png.k3j_9xq2.tmp"  # not f2n's name pattern: never touched
    for path in (stale, fresh, foreign):
        path.write_bytes(b"half a png")
    old = time.time() - STALE_TEMP_SECONDS - 60  # left by a run killed at the rename
    os.utime(stale, (old, old))
    os.utime(foreign, (old, old))
    result = invoke(astronaut, "--out", out, "--checkpoint", tiny_checkpoint, "--no-adapt", *FAST)
    assert result.exit_code == 0, result.output
    assert not stale.exists() and fresh.exists() and foreign.exists() and (out / "astronaut.png").is_file()


# 9. multi-frame images; --steps -3
def test_multi_frame_images_warn_that_only_the_first_frame_is_used(tmp_path: Path, tiny_checkpoint: Path) -> None:
    frames = [Image.new("RGB", (16, 16), colour) for colour in ("red", "green", "blue")]
    frames[0].save(tmp_path / "anim.png", save_all=True, append_images=frames[1:])  # APNG
    frames[0].save(tmp_path / "pages.tiff", save_all=True, append_images=frames[1:])
    for name in ("anim.png", "pages.tiff"):
        decoded = read_image(tmp_path / name)
        assert decoded.warnings == (f"{name} has 3 frames (animation or pages): only the first is used",)
        assert decoded.rgb[0, 0].tolist() == [1.0, 0.0, 0.0]
    report = tmp_path / "report.json"
    result = invoke(tmp_path / "anim.png", "--out", tmp_path / "out.png", "--checkpoint", tiny_checkpoint,
                    "--no-adapt", "--report", report, *FAST)
    assert result.exit_code == 0, result.output
    assert strict_json(report)["photos"][0]["warnings"] == [decoded.warnings[0].replace("pages.tiff", "anim.png")]


def test_negative_steps_say_the_bound_that_holds(astronaut: Path, tiny_checkpoint: Path) -> None:
    result = invoke(astronaut, "--checkpoint", tiny_checkpoint, "--steps", "-3")
    assert result.exit_code == ConfigError.exit_code
    assert result.output.strip() == ("error: adaptation steps must be >= 1, got -3 "
                                     "(to run the base network only, disable adaptation: --no-adapt)")


def test_prior_module_failing_at_import_fails_the_run_in_one_line(prior_modules: Path, astronaut: Path,
                                                                  tiny_checkpoint: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(prior_modules))
    result = invoke(astronaut, "--checkpoint", tiny_checkpoint, "--prior", "syntax_error:restore", *FAST)
    assert result.exit_code == ConfigError.exit_code and "Traceback" not in result.output
    assert textwrap.dedent(result.output).startswith("error: cannot load face prior 'syntax_error:restore': SyntaxError")
