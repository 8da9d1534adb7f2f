"""What the page and the nodes show and hand out for one photo (f2n.app.photo, f2n.app.figures,
f2n.app.pipelines), on a real photo with a face, a tiny network and the identity prior
(``numpy:copy``): fast, and every stage runs for real."""

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import TinyRRDBNet, WriteWeights

from f2n.app.figures import USED, faces_picture, mask_heatmap, summary
from f2n.app.photo import run_photo, save_outputs
from f2n.app import pipelines
from f2n.app.pipelines import PipelineCache, Settings
from f2n.errors import ConfigError
from f2n.runtime.images import DecodedImage
from f2n.weights import load_sr_network


@pytest.fixture(scope="module")
def tiny_checkpoint(tiny_rrdbnet: TinyRRDBNet, write_weights: WriteWeights,
                    tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(write_weights(tiny_rrdbnet(1).state_dict(), tmp_path_factory.mktemp("app") / "tiny.safetensors"))


def lincoln(shared_data: Path, side: int = 64) -> DecodedImage:
    bgr = cv2.imread(str(shared_data / "real_lq" / "Lincoln.png"), cv2.IMREAD_COLOR)
    rgb = cv2.cvtColor(cv2.resize(bgr, (side, side), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    return DecodedImage(rgb.astype(np.float32) / 255.0, None, 8, False)


def test_a_pipeline_is_built_once_per_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    built = []
    monkeypatch.setattr(pipelines, "pipeline_from_options", lambda options: built.append(options) or object())
    cache = PipelineCache(size=1)
    first = cache.get(Settings(engine="torch", adapt=False))
    assert cache.get(Settings(engine="torch", adapt=False)) is first and len(built) == 1
    assert built[0].no_adapt and built[0].engine == "torch"
    cache.get(Settings(engine="torch", adapt=True))  # new settings: built, and the oldest dropped (size 1)
    assert cache.get(Settings(engine="torch", adapt=False)) is not first and len(built) == 3
    with pytest.raises(ConfigError):  # the options' own checks, before any loading
        cache.get(Settings(steps=0))
    assert len(built) == 3


def test_another_strength_reuses_the_built_pipeline(tiny_checkpoint: str, shared_data: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The strength only scales θ′ − θ after the inner loop: a new one must not load the network,
    engine and prior again (issue 25), yet each photo gets the strength asked for."""
    built = []
    build = pipelines.pipeline_from_options
    monkeypatch.setattr(pipelines, "pipeline_from_options", lambda options: built.append(options) or build(options))
    cache = PipelineCache(size=1)
    chosen = dict(checkpoint=tiny_checkpoint, prior="numpy:copy", engine="torch", device="cpu", steps=2, guard=False)
    full, none = cache.get(Settings(**chosen, strength=1.0)), cache.get(Settings(**chosen, strength=0.0))
    assert len(built) == 1 and full.engine is none.engine and full.model is none.model
    assert (full.config.adapt.strength, none.config.adapt.strength) == (1.0, 0.0)
    image = lincoln(shared_data)
    adapted, unmoved = (run_photo(pipeline, image, "lincoln.png") for pipeline in (full, none))
    assert adapted.adapted and float(np.abs(adapted.enhanced.rgb - adapted.base).max()) > 1e-3
    np.testing.assert_allclose(unmoved.enhanced.rgb, unmoved.base, atol=1e-6)  # strength 0: θ itself
    assert unmoved.report.settings["adapt"]["strength"] == 0.0
    assert cache.get(Settings(**chosen)).config.adapt.strength == 1.0 and len(built) == 1  # f2n's default


def test_one_photo_gives_boxes_heat_map_figures_and_files(tiny_checkpoint: str, shared_data: Path,
                                                           tmp_path: Path) -> None:
    pipeline = PipelineCache().get(Settings(checkpoint=tiny_checkpoint, prior="numpy:copy", engine="torch",
                                            device="cpu", steps=2, guard=False))
    image = lincoln(shared_data)
    seen: list[tuple[float, str]] = []
    run = run_photo(pipeline, image, "lincoln.png", progress=lambda done, what: seen.append((done, what)))
    assert run.adapted and run.report.faces_used == 1
    assert [done for done, _ in seen] == sorted(done for done, _ in seen) and seen[-1][0] == 1.0
    assert any("adaptation step 2" in what for _, what in seen)
    # the base network's output is a second pass with θ, not the adapted result again
    assert run.base.shape == run.enhanced.rgb.shape == (256, 256, 3)
    assert float(np.abs(run.base - run.enhanced.rgb).max()) > 1e-3
    # the face's box is drawn in the "used" colour where the detector put it
    picture = faces_picture(image.rgb, run.enhanced.faces)
    factor = picture.shape[0] // 64
    x0, y0, x1, y1 = (factor * value for value in run.report.faces[0]["box"])
    assert tuple(picture[y0 + 1, (x0 + x1) // 2]) == USED and tuple(picture[(y0 + y1) // 2, x1]) == USED
    # the heat map colours the patch pairs only: the photo's corner stays grey
    heat = mask_heatmap(image.rgb, run.enhanced.faces)
    assert heat is not None and heat.shape == picture.shape
    corner = heat[0, 0].astype(int)
    assert corner[0] == corner[1] == corner[2]
    boxes = run.enhanced.faces.patch_boxes.astype(int) * factor
    inside = heat[boxes[0, 1] + 1, boxes[0, 0] + 1].astype(int)
    assert not inside[0] == inside[1] == inside[2]
    text = summary(run.report)
    assert "faces found: 1, used: 1" in text and "steps taken: 2 of at most 2" in text and "guard: off" in text
    # the downloads: the PNG as shown, the report, θ′ that f2n loads back
    files = save_outputs(run, tmp_path)
    with Image.open(files["png"]) as png:
        assert png.size == (256, 256)
        assert np.abs(np.asarray(png, np.float32) / 255 - run.enhanced.rgb).max() <= 1 / 255
    assert '"adapted": true' in files["report"].read_text()
    theta = load_sr_network(files["theta"]).model.state_dict()
    assert all(np.allclose(theta[key].numpy(), value.numpy()) for key, value in run.theta.items())


def test_a_photo_without_faces_says_why(tiny_checkpoint: str, shared_data: Path, tmp_path: Path) -> None:
    pipeline = PipelineCache().get(Settings(checkpoint=tiny_checkpoint, prior="numpy:copy", engine="torch",
                                            device="cpu", steps=2))
    frog = cv2.cvtColor(cv2.imread(str(shared_data / "real_lq" / "frog.png")), cv2.COLOR_BGR2RGB)[:48, :48]
    run = run_photo(pipeline, DecodedImage(frog.astype(np.float32) / 255, None, 8, False), "frog.png")
    assert not run.adapted and run.report.reason and run.base is run.enhanced.rgb
    assert mask_heatmap(frog.astype(np.float32) / 255, run.enhanced.faces) is None
    assert f"Not adapted**: {run.report.reason}" in summary(run.report)
    assert set(save_outputs(run, tmp_path)) == {"png", "report"}  # no θ′ without an adaptation
