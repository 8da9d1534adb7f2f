"""The adapt-and-run pipeline with a tiny network, the real RetinaFace detector and an
oracle prior on the astronaut demo crop."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TinyRRDBNet
from PIL import Image

from f2n.errors import ConfigError, InputImageError
from f2n.export.torch_engine import TorchEngine
from f2n.nets import RRDBNet
from f2n.runtime.adapt import AdaptConfig
from f2n.eval.demo import demo_pair
from f2n.runtime.face.detect import RetinaFaceDetector
from f2n.runtime.face.prior import OraclePrior
from f2n.runtime.face.regions import mask_canvas
from f2n.runtime.images import read_image, write_image
from f2n.runtime.methods import FaceAdaptation
from f2n.runtime.pipeline import AdaptAndRun, PipelineConfig
from f2n.runtime.psnr import psnr
from f2n.runtime.report import write_report_json
from f2n.weights import load_sr_network

ADAPT = AdaptConfig(steps=3, lr=1e-2, optimizer="adam", params="all")  # the tiny test net needs more than biases


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    return demo_pair()


@pytest.fixture(scope="module")
def detector() -> RetinaFaceDetector:
    return RetinaFaceDetector()


def make_pipeline(model: RRDBNet, gt: np.ndarray, detector: RetinaFaceDetector, **config: object) -> AdaptAndRun:
    return AdaptAndRun(model=model, engine=TorchEngine(model), method=FaceAdaptation(detector, OraclePrior(gt)),
                       config=PipelineConfig(adapt=ADAPT, tile=48, overlap=16, **config))


def test_run_writes_output_and_reports_every_stage(tiny_rrdbnet: TinyRRDBNet, pair, detector, tmp_path: Path) -> None:
    gt, lq = pair
    source, output, weights = tmp_path / "lq.png", tmp_path / "out.png", tmp_path / "theta.safetensors"
    write_image(source, lq)
    report = make_pipeline(tiny_rrdbnet(), gt, detector)(source, output, weights_out=weights)

    assert report.status == "ok" and report.adapted and report.reason == "" and report.method == "faces"
    assert report.faces_used == 1 and len(report.losses) == ADAPT.steps
    expected = {"decode", "face.detect", "face.align", "face.restore", "face.patches", "face.mask", "adapt",
                "adapt.step_1", "adapt.step_2", "adapt.step_3", "set_weights", "tile", "encode", "total"}
    assert expected <= set(report.timings) and all(t >= 0 for t in report.timings.values())
    assert report.timings["total"] >= report.timings["adapt"] + report.timings["tile"]
    assert read_image(output).rgb.shape == (256, 256, 3)

    saved = load_sr_network(weights)  # canonical names: loads like any RRDBNet checkpoint
    assert saved.descriptor.num_block == 1
    write_report_json(tmp_path / "report.json", [report])
    assert json.loads((tmp_path / "report.json").read_text())["photos"][0]["timings"]["adapt.step_3"] >= 0


def test_adapted_output_is_closer_to_ground_truth(tiny_rrdbnet: TinyRRDBNet, pair, detector) -> None:
    gt, lq = pair
    adapted = make_pipeline(tiny_rrdbnet(), gt, detector).enhance(lq)
    base = make_pipeline(tiny_rrdbnet(), gt, detector, adapt_enabled=False).enhance(lq)
    assert adapted.adaptation is not None and base.adaptation is None
    assert base.reason == "adaptation disabled (--no-adapt)"
    assert psnr(adapted.rgb, gt) > psnr(base.rgb, gt) + 1.0


def test_engine_gets_base_weights_back_after_an_adapted_photo(tiny_rrdbnet: TinyRRDBNet, pair, detector) -> None:
    gt, lq = pair
    pipeline = make_pipeline(tiny_rrdbnet(), gt, detector)
    pipeline.enhance(lq)  # loads θ_n into the engine
    flat = np.full((40, 40, 3), 0.5, np.float32)  # no face
    after = pipeline.enhance(flat)
    fresh = make_pipeline(tiny_rrdbnet(), gt, detector).enhance(flat)
    assert not after.adaptation and after.reason == "no face detected"
    np.testing.assert_array_equal(after.rgb, fresh.rgb)


def test_no_face_with_require_adaptation_fails_without_output(tiny_rrdbnet: TinyRRDBNet, pair, detector, tmp_path: Path) -> None:
    gt, _ = pair
    source, output = tmp_path / "flat.png", tmp_path / "out.png"
    write_image(source, np.full((40, 40, 3), 0.5, np.float32))
    with pytest.raises(InputImageError, match="no face detected"):
        make_pipeline(tiny_rrdbnet(), gt, detector, require_adaptation=True)(source, output)
    assert list(tmp_path.iterdir()) == [source]


def test_missing_prior_runs_the_base_network_with_the_reason(tiny_rrdbnet: TinyRRDBNet, pair, detector) -> None:
    _, lq = pair
    model = tiny_rrdbnet()
    method = FaceAdaptation(detector, None, prior_problem="face prior 'gpen' unavailable: weights missing")
    pipeline = AdaptAndRun(model=model, engine=TorchEngine(model), method=method,
                           config=PipelineConfig(adapt=ADAPT))
    result = pipeline.enhance(lq)
    assert result.adaptation is None and "unavailable" in result.reason


def test_paste_faces_puts_the_restored_face_in(tiny_rrdbnet: TinyRRDBNet, pair, detector) -> None:
    gt, lq = pair
    plain = make_pipeline(tiny_rrdbnet(), gt, detector).enhance(lq)
    pasted = make_pipeline(tiny_rrdbnet(), gt, detector, paste_faces=True).enhance(lq)
    mask = mask_canvas(pasted.faces.regions, gt.shape[:2])
    inside, outside = mask > 0.99, mask == 0
    # The oracle's restored face is the ground truth: pasting it makes the face exact.
    assert psnr(pasted.rgb, gt, where=inside) > 40 > psnr(plain.rgb, gt, where=inside)
    np.testing.assert_array_equal(pasted.rgb[outside], plain.rgb[outside])


def test_rgba_keeps_its_alpha(tiny_rrdbnet: TinyRRDBNet, pair, detector, tmp_path: Path) -> None:
    gt, lq = pair
    alpha = np.linspace(0, 1, lq.shape[0] * lq.shape[1], dtype=np.float32).reshape(lq.shape[:2])
    source, output = tmp_path / "rgba.png", tmp_path / "out.png"
    write_image(source, lq, alpha=alpha)
    make_pipeline(tiny_rrdbnet(), gt, detector, adapt_enabled=False)(source, output)
    decoded = read_image(output)
    assert decoded.alpha is not None and decoded.alpha.shape == (256, 256)
    assert abs(float(decoded.alpha.mean()) - 0.5) < 0.02


def test_grayscale_photo_comes_back_gray(tiny_rrdbnet: TinyRRDBNet, pair, detector, tmp_path: Path) -> None:
    gt, lq = pair
    source, output = tmp_path / "gray.png", tmp_path / "out.png"
    Image.fromarray(np.round(lq[:16, :16].mean(axis=2) * 255).astype(np.uint8), mode="L").save(source)
    make_pipeline(tiny_rrdbnet(), gt, detector, adapt_enabled=False)(source, output)
    with Image.open(output) as written:
        assert written.mode == "L" and written.size == (64, 64)


def test_output_format_decides_the_bit_depth_and_alpha_fails_before_the_work(tiny_rrdbnet: TinyRRDBNet, pair, detector, tmp_path: Path) -> None:
    gt, lq = pair
    source = tmp_path / "deep.png"
    write_image(source, lq[:16, :16], bit_depth=16)
    pipeline = make_pipeline(tiny_rrdbnet(), gt, detector, adapt_enabled=False)
    pipeline(source, tmp_path / "deep.jpg")  # was: an error after the work (JPEG holds no 16 bits)
    assert read_image(tmp_path / "deep.jpg").bit_depth == 8
    pipeline(source, tmp_path / "deep_again.png")
    assert read_image(tmp_path / "deep_again.png").bit_depth == 16

    write_image(source, lq[:16, :16], alpha=np.ones((16, 16), np.float32))

    class NoEngine(TorchEngine):
        def run(self, tiles: torch.Tensor) -> torch.Tensor:
            raise AssertionError("the photo was processed although its output cannot be written")

    model = tiny_rrdbnet()
    doomed = AdaptAndRun(model=model, engine=NoEngine(model), method=FaceAdaptation(detector, None),
                         config=PipelineConfig(adapt_enabled=False, tile=48, overlap=16))
    with pytest.raises(ConfigError, match="alpha"):
        doomed(source, tmp_path / "alpha.jpg")


def test_a_photo_run_drops_the_face_pictures_it_does_not_need(tiny_rrdbnet: TinyRRDBNet, pair, detector) -> None:
    """The x4 face regions stay alive through the tiles only for --paste-faces (and --save-debug)."""
    gt, lq = pair
    plain = make_pipeline(tiny_rrdbnet(), gt, detector).enhance(lq, keep_face_pictures=False)
    assert plain.adaptation is not None and plain.faces.patches is not None
    assert plain.faces.regions == () and plain.faces.aligned_faces is None and plain.faces.restored_faces is None
    pasted = make_pipeline(tiny_rrdbnet(), gt, detector, paste_faces=True).enhance(lq, keep_face_pictures=False)
    assert len(pasted.faces.regions) == 1 and pasted.faces.aligned_faces is None


class NearestEngine(TorchEngine):
    """x4 by repeating each pixel: the output holds the input's own values, so what the canvas
    and the encoder keep of them shows exactly."""

    def run(self, tiles: torch.Tensor) -> torch.Tensor:
        return tiles.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)


def test_a_16_bit_photo_keeps_its_16_bits_through_the_canvas(tiny_rrdbnet: TinyRRDBNet, tmp_path: Path) -> None:
    """A photo run stores its tiles into a 16-bit canvas for a 16-bit PNG: every 16-bit value of the
    input comes back (an 8-bit or float16 step anywhere on the way would merge neighbouring values)."""
    import cv2

    ramp = np.arange(40 * 56 * 3, dtype=np.uint16).reshape(40, 56, 3) * 7 + 3  # 6720 values, none a multiple of 257
    source, output = tmp_path / "deep.png", tmp_path / "out.png"
    cv2.imwrite(str(source), ramp[..., ::-1])
    model = tiny_rrdbnet()
    pipeline = AdaptAndRun(model=model, engine=NearestEngine(model), method=FaceAdaptation(None, None),
                           config=PipelineConfig(adapt_enabled=False, tile=16, overlap=4))
    pipeline(source, output)
    written = cv2.imread(str(output), cv2.IMREAD_UNCHANGED)[..., ::-1]
    assert written.dtype == np.uint16 and written.shape == (160, 224, 3)
    np.testing.assert_array_equal(written[::4, ::4], ramp)
