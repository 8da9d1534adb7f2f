"""The three f2n nodes. Only ComfyUI's stable modules are used (``folder_paths``,
``comfy.utils.ProgressBar``, ``comfy.model_management``), and f2n is imported inside the node
functions: a broken f2n install shows up as an error on the node, never as a ComfyUI that does
not start."""

import json
import os
from pathlib import Path

import comfy.model_management
import comfy.utils
import folder_paths

REGISTRY_SR = "realesrgan-x4plus"  # f2n's registry name: converted from the ncnn files on first use
# f2n.app.pipelines' names, spelled out here so that listing the node's choices imports no f2n
PRIOR_NAMES = ("gpen", "gpen-256", "gfpgan", "codeformer", "restoreformer")
ENGINES = ("auto", "torch", "openvino", "onnx", "ncnn")
FACE_MODELS = "facerestore_models"  # where ComfyUI users keep GPEN, GFPGAN and CodeFormer files

if FACE_MODELS not in folder_paths.folder_names_and_paths:  # registered by face-restore packs, if any is installed
    folder_paths.folder_names_and_paths[FACE_MODELS] = (
        [os.path.join(folder_paths.models_dir, FACE_MODELS)], set(folder_paths.supported_pt_extensions) | {".onnx"})

_PIPELINES = None  # f2n.app.pipelines.PipelineCache, made on first use


def _pipelines():
    global _PIPELINES
    if _PIPELINES is None:
        from f2n.app.pipelines import PipelineCache

        _PIPELINES = PipelineCache()
    return _PIPELINES


class F2NLoad:
    """The SR network, face prior and engine, built once per choice and reused."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "sr_model": ([REGISTRY_SR, *folder_paths.get_filename_list("upscale_models")],),
            "face_prior": ([*PRIOR_NAMES, *folder_paths.get_filename_list(FACE_MODELS)],),
            "engine": (ENGINES,),
            "steps": ("INT", {"default": 10, "min": 1, "max": 200}),
            "guard": ("BOOLEAN", {"default": True}),
            # θ + strength·(θ′ − θ) is what upscales (and what the UPSCALE_MODEL holds): 0 is the base network
            "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.05}),
        }}

    RETURN_TYPES = ("F2N_PIPELINE",)
    RETURN_NAMES = ("f2n",)
    FUNCTION = "load"
    CATEGORY = "f2n"

    def load(self, sr_model, face_prior, engine, steps, guard, strength=1.0):
        from f2n.app.pipelines import Settings
        from f2n.errors import ConfigError
        from f2n.export.spandrel_export import network_refusal

        checkpoint = sr_model if sr_model == REGISTRY_SR else folder_paths.get_full_path("upscale_models", sr_model)
        prior = face_prior if face_prior in PRIOR_NAMES else folder_paths.get_full_path(FACE_MODELS, face_prior)
        device = "cuda" if comfy.model_management.get_torch_device().type == "cuda" else "cpu"
        pipeline = _pipelines().get(Settings(checkpoint=checkpoint, prior=prior, engine=engine, device=device,
                                             steps=steps, guard=guard, strength=strength))
        refusal = network_refusal(pipeline.model, sr_model)  # θ′ goes out as an UPSCALE_MODEL
        if refusal:
            raise ConfigError(refusal)
        return (pipeline,)


class F2NAdaptAndUpscale:
    """Each image adapted from its own faces and upscaled x4; the first image's θ′ as an
    UPSCALE_MODEL for the stock "Upscale Image (using Model)" node; the report as JSON text."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"f2n": ("F2N_PIPELINE",), "image": ("IMAGE",)}}

    RETURN_TYPES = ("IMAGE", "UPSCALE_MODEL", "STRING")
    RETURN_NAMES = ("image", "upscale_model", "report")
    FUNCTION = "upscale"
    CATEGORY = "f2n"

    def upscale(self, f2n, image):
        import numpy as np
        import torch

        from f2n.app.photo import run_photo
        from f2n.export.spandrel_export import spandrel_model
        from f2n.runtime.images import DecodedImage
        from f2n.runtime.report import strict_json

        count = image.shape[0]
        bar = comfy.utils.ProgressBar(100 * count)
        outputs, reports, theta = [], [], None
        for index in range(count):
            rgb = np.ascontiguousarray(image[index, :, :, :3].float().cpu().numpy())

            def progress(fraction, _message, index=index):
                comfy.model_management.throw_exception_if_processing_interrupted()
                bar.update_absolute(int(100 * (index + fraction)))

            run = run_photo(f2n, DecodedImage(rgb, None, 8, False), f"image_{index}", progress=progress,
                            compare=False)
            outputs.append(torch.from_numpy(run.enhanced.rgb))
            reports.append(run.report.to_dict())
            if index == 0:
                theta = run.theta if run.adapted else f2n.base_weights
        model = spandrel_model(theta, f2n.model, "θ′ of image_0" if reports[0]["adapted"] else "the base network")
        report = {"upscale_model": "θ′ of image_0" if reports[0]["adapted"] else
                  f"the base network: image_0 was not adapted ({reports[0]['reason']})", "photos": reports}
        return (torch.stack(outputs), model, json.dumps(strict_json(report), indent=2))


class F2NSaveAdaptedModel:
    """An ESRGAN UPSCALE_MODEL (θ′ from F2N Adapt & Upscale) into upscale_models, under
    Real-ESRGAN's key names: "Load Upscale Model", chaiNNer and f2n read it back."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"upscale_model": ("UPSCALE_MODEL",),
                             "filename_prefix": ("STRING", {"default": "f2n_adapted"})}}

    RETURN_TYPES = ()
    FUNCTION = "save"
    OUTPUT_NODE = True
    CATEGORY = "f2n"

    def save(self, upscale_model, filename_prefix):
        from f2n.errors import ConfigError
        from f2n.export.spandrel_export import SPANDREL_ARCH, save_spandrel_weights
        from f2n.weights.sr import canonicalize_rrdbnet

        if not filename_prefix or Path(filename_prefix).name != filename_prefix:
            raise ConfigError(f"filename_prefix must be a plain file name, got {filename_prefix!r}")
        if upscale_model.architecture.id != SPANDREL_ARCH:
            raise ConfigError(f"F2N Save Adapted Model saves {SPANDREL_ARCH} models, "
                              f"got {upscale_model.architecture.id}")
        folder = Path(folder_paths.get_folder_paths("upscale_models")[0])
        folder.mkdir(parents=True, exist_ok=True)
        path = next(folder / f"{filename_prefix}_{n:05d}.safetensors" for n in range(1, 100000)
                    if not (folder / f"{filename_prefix}_{n:05d}.safetensors").exists())
        weights = canonicalize_rrdbnet(upscale_model.model.state_dict(), path)  # spandrel's old ESRGAN names
        save_spandrel_weights(path, weights, "ComfyUI F2N Adapt & Upscale")
        return {"ui": {"text": [path.name]}}


NODE_CLASS_MAPPINGS = {
    "F2NLoad": F2NLoad,
    "F2NAdaptAndUpscale": F2NAdaptAndUpscale,
    "F2NSaveAdaptedModel": F2NSaveAdaptedModel,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "F2NLoad": "F2N Load",
    "F2NAdaptAndUpscale": "F2N Adapt & Upscale",
    "F2NSaveAdaptedModel": "F2N Save Adapted Model",
}
