"""--adapt-method redegnet end to end on a shared photo with the official-code fixtures'
tiny ReDegNet networks and a tiny RRDBNet: Ω from the faces, synthetic natural pairs,
θ′ ≠ θ, the same θ′ in the torch and ONNX Runtime engines, the method in the report and
in the saved weights; the bank and weight errors as one line."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open

from f2n.errors import ConfigError, WeightsError
from f2n.export.torch_engine import TorchEngine
from f2n.runtime import cli
from f2n.runtime.adapt import AdaptConfig
from f2n.runtime.face_detect import RetinaFaceDetector
from f2n.runtime.face_prior import OraclePrior
from f2n.runtime.images import read_image, write_image
from f2n.runtime.pipeline import AdaptAndRun, PipelineConfig
from f2n.runtime.redegnet import NaturalBank, ReDegNetAdaptation, ReDegNetConfig, face_crop_pairs, load_redegnets
from f2n.weights import add_weight, load_sr_network

FIXTURES = Path(__file__).parent / "data" / "redegnet_official"
FILES = {"redegnet-degnet": "net_deg_small.pth", "redegnet-syn-encoder": "net_synE_small.pth",
         "redegnet-syn-generator": "net_synG_small.pth"}
ADAPT = AdaptConfig(steps=2, lr=1e-2, optimizer="adam")
CONFIG = ReDegNetConfig(natural_pairs=4)
FAST = ["--tile", "48", "--tile-overlap", "8", "--steps", "2", "--lr", "1e-2", "--natural-pairs", "4", "--no-progress"]


@pytest.fixture
def photo(shared_data: Path) -> Path:
    path = shared_data / "real_lq" / "Lincoln.png"  # one frontal face, 160x160
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture
def oracle_x4(photo: Path, tmp_path: Path) -> Path:
    """A stand-in 'restored' x4 image: the photo upscaled bicubically."""
    rgb = read_image(photo).rgb
    path = tmp_path / "gt_x4.png"
    write_image(path, np.clip(cv2.resize(rgb, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC), 0, 1))
    return path


@pytest.fixture
def redegnet_weights() -> None:
    """The tiny official-code networks added to the (per-test, isolated) weight cache."""
    for name, file in FILES.items():
        add_weight(name, FIXTURES / file)


@pytest.fixture
def checkpoint(tiny_weights: Path) -> Path:
    return tiny_weights


def pipeline(engine_name: str, checkpoint: Path, photo_rgb: np.ndarray, oracle: np.ndarray, bank: Path,
             **config: object) -> AdaptAndRun:
    loaded = load_sr_network(checkpoint)
    if engine_name == "torch":
        engine = TorchEngine(loaded.model)
    else:
        from f2n.export.engines import make_engine

        engine = make_engine(engine_name, loaded, device="cpu", precision="fp32", tile=48)
    method = ReDegNetAdaptation(RetinaFaceDetector(), OraclePrior(oracle), load_redegnets(), NaturalBank(bank),
                                config=CONFIG)
    return AdaptAndRun(model=loaded.model, engine=engine, method=method,
                       config=PipelineConfig(adapt=ADAPT, tile=48, overlap=8, **config))


def test_theta_prime_from_synthetic_natural_pairs_reaches_torch_and_onnx(
        redegnet_weights: None, checkpoint: Path, photo: Path, oracle_x4: Path, shared_data: Path) -> None:
    rgb, oracle, bank = read_image(photo).rgb, read_image(oracle_x4).rgb, shared_data / "natural_hq"
    adapted = pipeline("torch", checkpoint, rgb, oracle, bank).enhance(rgb)
    assert adapted.adaptation is not None, adapted.reason
    assert adapted.method == "redegnet" and adapted.provenance["natural_pairs"] == "4"
    assert {"face.detect", "redegnet.synthesise", "adapt"} <= set(adapted.timings)
    base_weights = load_sr_network(checkpoint).model.state_dict()
    assert any(not torch.equal(value, base_weights[name]) for name, value in adapted.adaptation.weights.items())
    base = pipeline("torch", checkpoint, rgb, oracle, bank, adapt_enabled=False).enhance(rgb)
    change = float(np.abs(adapted.rgb - base.rgb).max())
    assert change > 1e-3  # θ′ changed the picture

    onnx = pipeline("onnx", checkpoint, rgb, oracle, bank).enhance(rgb)
    assert onnx.method == "redegnet"
    assert float(np.abs(onnx.rgb - adapted.rgb).max()) < 0.01 * change  # ORT ran θ′, not θ


def invoke(*args: object) -> "CliRunner.invoke":
    return CliRunner().invoke(cli.command, [str(a) for a in args], catch_exceptions=False)


def test_cli_adapts_with_redegnet_and_records_the_method(redegnet_weights: None, checkpoint: Path, photo: Path,
                                                         oracle_x4: Path, shared_data: Path, tmp_path: Path) -> None:
    out, weights, report = tmp_path / "out.png", tmp_path / "theta.safetensors", tmp_path / "report.json"
    result = invoke(photo, "--out", out, "--checkpoint", checkpoint, "--adapt-method", "redegnet",
                    "--natural-bank", shared_data / "natural_hq", "--prior", f"oracle:{oracle_x4}",
                    "--save-weights", weights, "--report", report, *FAST)
    assert result.exit_code == 0, result.output
    assert "(adapted with redegnet;" in result.output
    entry = json.loads(report.read_text())["photos"][0]
    assert entry["method"] == "redegnet" and entry["settings"]["natural_pairs"] == 4
    with safe_open(str(weights), framework="pt") as handle:
        assert handle.metadata()["method"] == "redegnet"


def test_f2n_esrgan_as_theta_adapts_with_redegnet_and_stays_signed(redegnet_weights: None, photo: Path,
                                                                   oracle_x4: Path, shared_data: Path,
                                                                   tmp_path: Path) -> None:
    """The official pairing: θ is F2N-ESRGAN (trained in [-1, 1]); θ′ comes from [0, 1] pairs through
    the range-carrying network and is saved as signed."""
    official = Path(__file__).parent / "data" / "f2n_esrgan_official" / "F2NESRGAN.pth"
    weights = tmp_path / "theta.safetensors"
    result = invoke(photo, "--out", tmp_path / "out.png", "--checkpoint", official, "--adapt-method", "redegnet",
                    "--natural-bank", shared_data / "natural_hq", "--prior", f"oracle:{oracle_x4}",
                    "--save-weights", weights, "--no-guard", *FAST)  # θ′ itself, whatever the tiny nets render
    assert result.exit_code == 0 and "(adapted with redegnet;" in result.output, result.output
    theta, theta_prime = load_sr_network(official), load_sr_network(weights)
    assert theta_prime.descriptor.value_range == "signed"
    assert any(not torch.equal(v, theta.model.state_dict()[k]) for k, v in theta_prime.model.state_dict().items())


@pytest.mark.parametrize("bank, message", [
    (None, "needs --natural-bank DIR"),
    ("missing", "is not a folder"),
    ("empty", "holds no images"),
])
def test_bank_errors_are_one_line(redegnet_weights: None, checkpoint: Path, photo: Path, tmp_path: Path,
                                  bank: str | None, message: str) -> None:
    (tmp_path / "empty").mkdir()
    bank_args = [] if bank is None else ["--natural-bank", tmp_path / bank]
    result = invoke(photo, "--out", tmp_path / "out.png", "--checkpoint", checkpoint, "--adapt-method", "redegnet",
                    *bank_args, *FAST)
    lines = result.output.strip().splitlines()
    assert result.exit_code == ConfigError.exit_code and len(lines) == 1
    assert lines[0].startswith("error: ") and message in lines[0]
    assert not (tmp_path / "out.png").exists()


def test_missing_redegnet_weights_are_one_line_saying_how_to_add_them(checkpoint: Path, photo: Path,
                                                                      shared_data: Path, tmp_path: Path) -> None:
    result = invoke(photo, "--out", tmp_path / "out.png", "--checkpoint", checkpoint, "--adapt-method", "redegnet",
                    "--natural-bank", shared_data / "natural_hq", *FAST)
    lines = result.output.strip().splitlines()
    assert result.exit_code == WeightsError.exit_code and len(lines) == 1
    assert "redegnet-degnet" in lines[0] and "f2n-models add" in lines[0]


def test_cli_takes_the_networks_from_a_folder_instead_of_the_cache(checkpoint: Path, photo: Path, oracle_x4: Path,
                                                                   shared_data: Path, tmp_path: Path) -> None:
    """A training run's checkpoints/ (latest step of each network) with nothing in the weight cache."""
    run = tmp_path / "run" / "checkpoints"
    run.mkdir(parents=True)
    for stem in ("net_deg", "net_synE", "net_synG"):
        (run / f"{stem}_0000100.pth").write_bytes((FIXTURES / f"{stem}_small.pth").read_bytes())
    report = tmp_path / "report.json"
    result = invoke(photo, "--out", tmp_path / "out.png", "--checkpoint", checkpoint, "--adapt-method", "redegnet",
                    "--natural-bank", shared_data / "natural_hq", "--prior", f"oracle:{oracle_x4}",
                    "--redegnet-weights", tmp_path / "run", "--report", report, *FAST)
    assert result.exit_code == 0, result.output
    entry = json.loads(report.read_text())["photos"][0]
    assert entry["method"] == "redegnet" and entry["settings"]["redegnet_weights"] == str(run / "net_deg_0000100.pth")


def test_a_wrong_network_in_place_of_a_redegnet_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="expected redegnet-syn-encoder"):
        add_weight("redegnet-syn-encoder", FIXTURES / "net_deg_small.pth")


def test_face_crops_follow_the_official_convention() -> None:
    """×4 the face's LQ side, 3 % border dropped, crops at the same place in both faces."""
    rng = np.random.default_rng(0)
    aligned = rng.random((512, 512, 3), dtype=np.float32)
    restored = rng.random((512, 512, 3), dtype=np.float32)
    assert face_crop_pairs(aligned, restored, lq_side=60, crop=256, count=2, rng=rng) is None  # 240 px: too small
    pair = face_crop_pairs(aligned, restored, lq_side=100, crop=256, count=3, rng=np.random.default_rng(1))
    assert pair is not None and pair[0].shape == pair[1].shape == (3, 256, 256, 3)
    up, border = 400, 12  # 4 × 100 px, int(400 × 0.03)
    trimmed = cv2.resize(restored, (up, up))[border:up - border, border:up - border]
    offsets = np.random.default_rng(1).integers(0, up - 2 * border - 256 + 1, size=(3, 2))
    for crop, (y, x) in zip(pair[0], offsets):
        np.testing.assert_array_equal(crop, trimmed[y:y + 256, x:x + 256])


def test_zero_natural_pairs_is_one_line(redegnet_weights: None, checkpoint: Path, photo: Path, shared_data: Path,
                                        tmp_path: Path) -> None:
    result = invoke(photo, "--out", tmp_path / "out.png", "--checkpoint", checkpoint, "--adapt-method", "redegnet",
                    "--natural-bank", shared_data / "natural_hq", *FAST, "--natural-pairs", "0")
    lines = result.output.strip().splitlines()
    assert result.exit_code == ConfigError.exit_code and len(lines) == 1 and ">= 1 natural pair" in lines[0]
