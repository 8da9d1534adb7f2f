"""f2n-eval end to end on a tiny RRDBNet and one small face photo: every method row, the
report files, the CLI's exit codes."""

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from f2n.eval.cli import main
from f2n.eval.report import write_report
from f2n.eval.run import EvalConfig, evaluate_set
from f2n.eval.testset import build_test_set


@pytest.fixture(scope="module")
def face_set(shared_data, tmp_path_factory):
    """One aligned FFHQ face shrunk to 192 px: a 48 px LQ face the detector finds."""
    hq = tmp_path_factory.mktemp("hq")
    Image.open(sorted((shared_data / "faces_hq").glob("*.png"))[0]).convert("RGB").save(hq / "face.png")
    out = tmp_path_factory.mktemp("set")
    build_test_set(hq, out, kind="iid", seed=0, max_side=192)
    return out


@pytest.mark.slow  # ~10 s CPU (detector, NIQE, two snapshots); 46 s wall on the loaded 2-core machine
def test_evaluate_set_gives_every_method_and_metric(face_set, tiny_weights, tmp_path):
    config = EvalConfig(steps=(1, 2), priors=("oracle", "gpen"), base_network=str(tiny_weights), lpips=False)
    result = evaluate_set(face_set, config)
    (photo,) = result.photos
    assert len(photo.face_boxes) == 1
    assert list(photo.metrics) == ["bicubic", "tiny base", "tiny adapted n=1, oracle prior (upper bound)",
                                   "tiny adapted n=2, oracle prior (upper bound)"]
    assert "adapted, gpen prior" in result.not_run  # no GPEN weights in the test's F2N_HOME
    assert {"fid", "kid"} <= result.not_run.keys()
    for row in photo.metrics.values():
        assert set(row) == {"psnr", "ssim", "niqe", "psnr_nonface", "ssim_nonface", "niqe_nonface"}
        assert np.isfinite(row["psnr"]) and 0 < row["ssim"] <= 1
    # Adapting to the ground-truth faces moves the output: the snapshots differ from the base.
    outputs = photo.outputs
    assert not np.array_equal(outputs["tiny base"], outputs["tiny adapted n=1, oracle prior (upper bound)"])
    assert not np.array_equal(outputs["tiny adapted n=1, oracle prior (upper bound)"],
                              outputs["tiny adapted n=2, oracle prior (upper bound)"])

    paths = write_report(result, tmp_path / "report")
    rows = list(csv.DictReader(paths["csv"].open()))
    assert [r["image"] for r in rows] == ["face"] * 4 + ["mean"] * 4
    assert float(rows[0]["psnr"]) == pytest.approx(photo.metrics["bicubic"]["psnr"])
    text = paths["markdown"].read_text()
    assert "upper bound" in text and "GPEN weights unavailable" in text
    crops = np.asarray(Image.open(paths["crops:face"]))
    assert crops.shape == (32 + 192, 5 * 192, 3)  # LQ, bicubic, base, adapted n=2, GT


def test_cli_build_and_run(shared_data, tiny_weights, tmp_path):
    hq = tmp_path / "hq"
    hq.mkdir()
    Image.open(sorted((shared_data / "faces_hq").glob("*.png"))[1]).convert("RGB").save(hq / "face.png")
    runner = CliRunner()
    built = runner.invoke(main, ["build", str(hq), str(tmp_path / "set"), "--kind", "ood", "--seed", "5",
                                 "--max-side", "128"])
    assert built.exit_code == 0, built.output
    assert json.loads((tmp_path / "set" / "manifest.json").read_text())["kind"] == "ood"
    ran = runner.invoke(main, ["run", str(tmp_path / "set"), "--out", str(tmp_path / "report"), "--steps", "1",
                               "--prior", "oracle", "--base", str(tiny_weights), "--no-lpips"])
    assert ran.exit_code == 0, ran.output
    assert "| tiny base |" in ran.output and (tmp_path / "report" / "results.csv").is_file()


def test_cli_errors_are_one_line_with_exit_codes(tmp_path, tiny_weights):
    runner = CliRunner()
    missing = runner.invoke(main, ["run", str(tmp_path / "nothing"), "--out", str(tmp_path / "r")])
    assert missing.exit_code == 2 and missing.output.count("\n") == 1 and "not a test set" in missing.output
    assert not (tmp_path / "r").exists()
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "manifest.json").write_text(json.dumps({"kind": "iid", "seed": 0, "scale": 4, "images": []}))
    bad_steps = runner.invoke(main, ["run", str(tmp_path / "set"), "--out", str(tmp_path / "r"), "--steps", "1,x"])
    assert bad_steps.exit_code == 5 and "comma-separated integers" in bad_steps.output
    gpen = runner.invoke(main, ["run", str(tmp_path / "set"), "--out", str(tmp_path / "r"), "--prior", "gpen",
                                "--base", str(tiny_weights)])
    assert gpen.exit_code == 3 and gpen.output.startswith("error: ")
    (tmp_path / "taken.md").write_text("a file")
    for out in (tmp_path / "taken.md", tmp_path / "taken.md" / "sub"):  # was: a traceback after the evaluation
        onto_file = runner.invoke(main, ["run", str(tmp_path / "set"), "--out", str(out), "--base", "nope"])
        assert onto_file.exit_code == 5 and onto_file.output.count("\n") == 1 and "is a file" in onto_file.output


def test_photo_without_usable_face_falls_back_to_the_base_output(shared_data, tiny_weights, tmp_path):
    hq = tmp_path / "hq"
    hq.mkdir()
    Image.open(sorted((shared_data / "natural_hq").glob("*.png"))[0]).convert("RGB").save(hq / "scene.png")
    build_test_set(hq, tmp_path / "set", kind="iid", seed=0, max_side=128)
    config = EvalConfig(steps=(1,), priors=("oracle",), base_network=str(tiny_weights), lpips=False)
    (photo,) = evaluate_set(tmp_path / "set", config).photos
    adapted = "tiny adapted n=1, oracle prior (upper bound)"
    assert photo.face_boxes == ()
    np.testing.assert_array_equal(photo.outputs[adapted], photo.outputs["tiny base"])
    assert photo.metrics[adapted]["psnr"] == photo.metrics["tiny base"]["psnr"]
    assert any("base output used" in note for note in photo.notes)
