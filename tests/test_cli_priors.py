"""Every ``--prior`` form through f2n-adapt-and-run, end to end: a registry name, a .pth, a
.safetensors and an .onnx face restorer, module:callable, oracle: and oracle-restored:. Each
run adapts the astronaut photo (one face) with a tiny SR checkpoint and names its prior in the
report. The restorer files are the GPEN fixture made by the official code (64x64 faces)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from f2n.runtime import cli
from f2n.runtime.demo import demo_pair
from f2n.runtime.images import read_image, write_image

GPEN_FIXTURE = Path(__file__).parent / "data" / "gpen_official" / "gpen_cm1.pth"
FAST = ["--tile", "64", "--tile-overlap", "16", "--steps", "2", "--patches-per-face", "2", "--no-progress"]
CONSTANT = 0.25  # what the constant SR checkpoint below outputs everywhere


@pytest.fixture(scope="module")
def photo_and_truth(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("photo")
    gt, lq = demo_pair()
    write_image(folder / "astronaut.png", lq)
    write_image(folder / "astronaut_gt.png", gt)
    return folder / "astronaut.png", folder / "astronaut_gt.png"


def _run(photo: Path, folder: Path, *args: object) -> dict:
    """The photo's report entry of one run writing into ``folder`` (its debug pictures too)."""
    out, report = folder / photo.name, folder / "report.json"
    result = CliRunner().invoke(cli.command, [str(a) for a in (photo, "--out", out, "--report", report,
                                                                   "--save-debug", *FAST, *args)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and read_image(out).rgb.shape == (256, 256, 3)
    return json.loads(report.read_text())["photos"][0]


def _gpen_files(folder: Path) -> dict[str, Path]:
    """The GPEN fixture as .pth, .safetensors and .onnx (the circulating ONNX convention)."""
    from safetensors.torch import save_file

    from f2n.weights import load_state_dict_file
    from f2n.weights.gpen import load_gpen

    state = load_state_dict_file(GPEN_FIXTURE)
    save_file({key: value.contiguous() for key, value in state.items()}, folder / "gpen.safetensors")
    model = load_gpen(state, GPEN_FIXTURE)
    torch.onnx.export(model, (torch.zeros(1, 3, 64, 64),), str(folder / "gpen.onnx"), input_names=["input"],
                      output_names=["output"], opset_version=17, dynamo=False)
    return {"pth": GPEN_FIXTURE, "safetensors": folder / "gpen.safetensors", "onnx": folder / "gpen.onnx"}


@pytest.mark.slow
def test_every_prior_form_adapts_the_photo_from_the_cli(photo_and_truth: tuple[Path, Path], tmp_path: Path,
                                                        tiny_weights: Path, isolated_f2n_home: Path) -> None:
    photo, gt = photo_and_truth
    shutil.copyfile(GPEN_FIXTURE, isolated_f2n_home / "GPEN-BFR-256.pth")  # gpen-256's weights are unpinned
    files = _gpen_files(tmp_path)
    forms = {"name": ("gpen-256", "gpen-bfr-256"), "pth": (str(files["pth"]), "gpen-bfr-64"),
             "safetensors": (str(files["safetensors"]), "gpen-bfr-64"), "onnx": (str(files["onnx"]), None),
             "callable": ("numpy:copy", "numpy:copy"), "oracle": (f"oracle:{gt}", "oracle"),
             "oracle-restored": (f"oracle-restored:{gt}", "oracle-restored")}
    for form, (spec, name) in forms.items():
        photo_report = _run(photo, tmp_path / form, "--checkpoint", tiny_weights, "--prior", spec)
        assert photo_report["adapted"] is True, (form, photo_report["reason"])
        settings = photo_report["settings"]
        if name is not None:
            assert settings["prior"] == name, form
        assert settings["prior_provenance"], form  # the report says which prior restored the faces
        if form in ("pth", "safetensors", "onnx"):
            assert settings["prior_provenance"]["file"] == str(files[form])


@pytest.fixture()
def constant_weights(tmp_path: Path, tiny_rrdbnet, write_weights) -> Path:
    """A tiny RRDBNet whose output is CONSTANT everywhere: faces it restores are flat grey."""
    model = tiny_rrdbnet()
    with torch.no_grad():
        model.conv_last.weight.zero_()
        model.conv_last.bias.fill_(CONSTANT)
    return write_weights(model.state_dict(), tmp_path / "constant.safetensors")


def test_oracle_restored_restores_with_the_runs_checkpoint(photo_and_truth: tuple[Path, Path], tmp_path: Path,
                                                           constant_weights: Path) -> None:
    photo, gt = photo_and_truth
    photo_report = _run(photo, tmp_path, "--checkpoint", constant_weights, "--device", "cpu",
                                "--prior", f"oracle-restored:{gt}")
    # (its flat targets are what its flat output already is: nothing to adapt, the guard keeps θ)
    settings = photo_report["settings"]
    assert settings["prior"] == "oracle-restored"
    assert settings["prior_provenance"]["sr_network"] == str(constant_weights)
    assert settings["prior_provenance"]["ground_truth"] == str(gt)
    # The restored face is the checkpoint's output (flat), not stock x4plus's (the astronaut's face).
    restored = read_image(tmp_path / "astronaut_debug" / "face_0_restored.png").rgb
    centre = restored[restored.shape[0] // 4: -restored.shape[0] // 4, restored.shape[1] // 4: -restored.shape[1] // 4]
    np.testing.assert_allclose(centre, CONSTANT, atol=1.5 / 255)
