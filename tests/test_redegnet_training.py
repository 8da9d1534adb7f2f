"""f2n-train --method redegnet on the shared face pairs and natural images: a short run, its
checkpoints (training state + the networks and the discriminator in the released layout), and a resume that
continues from the saved state."""

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from f2n.errors import ConfigError
from f2n.training.cli import main
from f2n.weights import load_network, load_state_dict_file

TINY = ["--redegnet-size", "32", "--redegnet-narrow", "0.0625", "--batch-size", "2", "--no-perceptual",
        "--no-progress", "--device", "cpu", "--log-every", "1"]


@pytest.fixture
def data(shared_data: Path) -> dict[str, Path]:
    folders = {"pairs": shared_data / "face_pairs_real", "natural": shared_data / "natural_hq"}
    if not all(folder.is_dir() for folder in folders.values()):
        pytest.skip("the shared face pairs / natural images are absent")
    return folders


def train(data: dict[str, Path], out: Path, *extra: str) -> "CliRunner.invoke":
    args = ["--method", "redegnet", "--face-pairs", data["pairs"], "--natural", data["natural"], "--out", out,
            *TINY, *extra]
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_train_saves_loadable_networks_and_resumes_where_it_stopped(data: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = train(data, out, "--steps", "2", "--checkpoint-every", "2")
    assert first.exit_code == 0, first.output
    saved = {name: load_state_dict_file(out / "checkpoints" / f"{name}_0000002.pth")
             for name in ("net_deg", "net_synE", "net_synG", "net_synD")}
    for file, network in (("net_deg", "redegnet-degnet"), ("net_synE", "redegnet-syn-encoder"),
                          ("net_synG", "redegnet-syn-generator"), ("net_synD", "redegnet-discriminator")):
        assert load_network(saved[file], Path(file), expected=network)[0] == network

    resumed = train(data, out, "--steps", "3", "--resume", out / "checkpoints" / "step_0000002.train.safetensors")
    assert resumed.exit_code == 0, resumed.output
    assert "resumed from" in resumed.output and "at step 2" in resumed.output
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [record["step"] for record in records] == [1, 2, 3]  # the resumed run did step 3 only
    assert {"pixel", "same_degradation", "contrastive", "adversarial", "disc"} <= set(records[-1])
    after = load_state_dict_file(out / "checkpoints" / "net_deg_0000003.pth")
    assert any(not torch.equal(after[k], saved["net_deg"][k]) for k in after)  # it went on learning

    again = train(data, out, "--steps", "3", "--resume", out / "checkpoints" / "step_0000003.train.safetensors")
    assert again.exit_code == ConfigError.exit_code and "nothing to do" in again.output


def test_missing_face_pairs_is_one_line(data: dict[str, Path], tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--method", "redegnet", "--natural", str(data["natural"]),
                                       "--out", str(tmp_path / "run"), *TINY, "--steps", "1"])
    assert result.exit_code == ConfigError.exit_code
    assert result.output.strip().splitlines() == [
        "error: --method redegnet needs --face-pairs (lq/ and pseudo_hq/) and --natural, folders of images"]
