"""The ComfyUI node pack (``comfyui/``), loaded the way ComfyUI loads a custom node: its
``__init__.py`` by ``spec_from_file_location`` with the folder as the package, beside minimal
stand-ins for the only ComfyUI modules it may use (``folder_paths``, ``comfy.utils``,
``comfy.model_management``). Each node runs on a real photo with real x4plus weights; the
UPSCALE_MODEL goes through spandrel (ComfyUI's loader) and must give f2n's result."""

import importlib.util
import json
import os
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import pytest
import torch
from spandrel import ModelLoader

from f2n.runtime.images import read_image

ROOT = Path(__file__).resolve().parents[1]
PACK = ROOT / "comfyui"
GPEN_FIXTURE = ROOT / "tests" / "data" / "gpen_official" / "gpen_cm1.pth"  # official GPEN code, tiny, seeded
TOLERANCE = 1e-4
EXTENSIONS = {".ckpt", ".pt", ".pth", ".safetensors"}


class ProgressBar:
    """comfy.utils.ProgressBar's two calls; keeps what it was told."""

    def __init__(self, total: int) -> None:
        self.total, self.values = total, []
        ProgressBar.made.append(self)

    def update_absolute(self, value: int, total: int | None = None, preview: object = None) -> None:
        self.values.append(value)

    made: ClassVar[list["ProgressBar"]] = []


def stand_ins(models: Path) -> dict[str, types.ModuleType]:
    """ComfyUI's folder_paths (the long-standing functions), comfy.utils and comfy.model_management."""
    folder_paths = types.ModuleType("folder_paths")
    folder_paths.models_dir = str(models)
    folder_paths.supported_pt_extensions = EXTENSIONS
    folder_paths.folder_names_and_paths = {"upscale_models": ([str(models / "upscale_models")], EXTENSIONS)}

    def get_folder_paths(name: str) -> list[str]:
        return folder_paths.folder_names_and_paths[name][0]

    def get_filename_list(name: str) -> list[str]:
        folders, extensions = folder_paths.folder_names_and_paths[name]
        return sorted(file for folder in folders if os.path.isdir(folder) for file in os.listdir(folder)
                      if Path(file).suffix in extensions)

    def get_full_path(name: str, filename: str) -> str | None:
        return next((str(Path(folder) / filename) for folder in get_folder_paths(name)
                     if (Path(folder) / filename).is_file()), None)

    folder_paths.get_folder_paths, folder_paths.get_filename_list = get_folder_paths, get_filename_list
    folder_paths.get_full_path = get_full_path
    comfy = types.ModuleType("comfy")
    utils = types.ModuleType("comfy.utils")
    utils.ProgressBar = ProgressBar
    management = types.ModuleType("comfy.model_management")
    management.get_torch_device = lambda: torch.device("cpu")
    management.throw_exception_if_processing_interrupted = lambda: None
    comfy.utils, comfy.model_management = utils, management
    return {"folder_paths": folder_paths, "comfy": comfy, "comfy.utils": utils, "comfy.model_management": management}


@pytest.fixture()
def pack(tmp_path: Path, real_sr_weights: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    models = tmp_path / "models"
    (models / "upscale_models").mkdir(parents=True)
    (models / "facerestore_models").mkdir()
    (models / "upscale_models" / "RealESRGAN_x4plus.safetensors").symlink_to(real_sr_weights)
    (models / "facerestore_models" / "GPEN-tiny.pth").symlink_to(GPEN_FIXTURE)
    for name, module in stand_ins(models).items():
        monkeypatch.setitem(sys.modules, name, module)
    name = "f2n_comfyui_pack"  # ComfyUI names the module after the folder
    spec = importlib.util.spec_from_file_location(name, PACK / "__init__.py", submodule_search_locations=[str(PACK)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:  # a fresh import per test: the pack's module-level code reads these stand-ins
        for loaded in [key for key in sys.modules if key == name or key.startswith(name + ".")]:
            del sys.modules[loaded]


def comfy_image(path: Path, side: int) -> torch.Tensor:
    """ComfyUI's IMAGE: [B, H, W, 3] float32 in [0, 1]."""
    rgb = cv2.resize(read_image(path).rgb, (side, side), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(np.clip(rgb, 0, 1))[None]


def nodes(pack: types.ModuleType) -> tuple[object, object, object]:
    mapping = pack.NODE_CLASS_MAPPINGS
    names = {"F2N Load", "F2N Adapt & Upscale", "F2N Save Adapted Model"}
    assert set(pack.NODE_DISPLAY_NAME_MAPPINGS.values()) == names
    return mapping["F2NLoad"](), mapping["F2NAdaptAndUpscale"](), mapping["F2NSaveAdaptedModel"]()


def spandrel_run(model: object, image: torch.Tensor) -> torch.Tensor:
    """What the stock "Upscale Image (using Model)" node computes on one tile: NHWC in, NHWC out."""
    with torch.inference_mode():
        return model(image.movedim(-1, 1)).movedim(1, -1)


def test_the_pack_lists_the_folders_choices_without_importing_f2n(pack: types.ModuleType) -> None:
    choices = pack.NODE_CLASS_MAPPINGS["F2NLoad"].INPUT_TYPES()["required"]
    assert "RealESRGAN_x4plus.safetensors" in choices["sr_model"][0]
    assert "GPEN-tiny.pth" in choices["face_prior"][0] and "gpen" in choices["face_prior"][0]
    assert "import f2n" not in (PACK / "nodes.py").read_text().split("\nclass ")[0]  # module level: no f2n


def test_each_node_on_a_real_photo_and_the_upscale_model_runs_as_f2n(
        pack: types.ModuleType, shared_data: Path, tmp_path: Path) -> None:
    load, adapt, save = nodes(pack)
    (pipeline,) = load.load("RealESRGAN_x4plus.safetensors", "GPEN-tiny.pth", "torch", 2, True)
    image = comfy_image(shared_data / "real_lq" / "Lincoln.png", 64)
    upscaled, model, report_text = adapt.upscale(pipeline, image)
    report = json.loads(report_text)
    photo = report["photos"][0]
    assert photo["adapted"] and photo["faces_used"] == 1, photo["reason"]
    assert upscaled.shape == (1, 256, 256, 3) and upscaled.dtype == torch.float32
    assert 0 <= float(upscaled.min()) and float(upscaled.max()) <= 1
    assert ProgressBar.made[-1].values[-1] == ProgressBar.made[-1].total  # the bar reached its end
    # the UPSCALE_MODEL is θ′: spandrel runs it as f2n's torch engine did (one tile: no blending)
    assert model.architecture.id == "ESRGAN" and model.scale == 4
    assert float((spandrel_run(model, image) - upscaled).abs().max()) <= TOLERANCE
    # ... and not the base network
    base = np.clip(pipeline.upscale(image[0].numpy(), pipeline.base_weights), 0, 1)
    assert float((upscaled[0] - torch.from_numpy(base)).abs().max()) > 10 * TOLERANCE
    # saved into upscale_models, it loads back with spandrel (ComfyUI's Load Upscale Model) as the same θ′
    result = save.save(model, "f2n_lincoln")
    saved = tmp_path / "models" / "upscale_models" / result["ui"]["text"][0]
    assert saved.name == "f2n_lincoln_00001.safetensors"
    reloaded = ModelLoader().load_from_file(str(saved)).eval()
    assert float((spandrel_run(reloaded, image) - upscaled).abs().max()) <= TOLERANCE
    assert "f2n_lincoln_00001.safetensors" in load.INPUT_TYPES()["required"]["sr_model"][0]


def test_a_photo_without_faces_passes_through_the_base_network_and_says_why(
        pack: types.ModuleType, shared_data: Path) -> None:
    load, adapt, _ = nodes(pack)
    (pipeline,) = load.load("RealESRGAN_x4plus.safetensors", "GPEN-tiny.pth", "torch", 2, True)
    image = comfy_image(shared_data / "real_lq" / "frog.png", 24)
    upscaled, model, report_text = adapt.upscale(pipeline, image)
    report = json.loads(report_text)
    assert not report["photos"][0]["adapted"] and "face" in report["photos"][0]["reason"]
    assert report["upscale_model"].startswith("the base network")
    base = np.clip(pipeline.upscale(image[0].numpy(), pipeline.base_weights), 0, 1)
    assert float((upscaled[0] - torch.from_numpy(base)).abs().max()) <= TOLERANCE
    assert float((spandrel_run(model, image) - upscaled).abs().max()) <= TOLERANCE


def test_a_bad_file_name_prefix_is_refused(pack: types.ModuleType) -> None:
    from f2n.errors import ConfigError

    _, _, save = nodes(pack)
    with pytest.raises(ConfigError, match="plain file name"):
        save.save(None, "../outside")
