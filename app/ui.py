"""f2n-app's page: upload a photo, see the faces found and MaskNet's weights, compare the adapted
result with the base network (or bicubic) in a slider, read the figures, download the PNG,
the JSON report and θ′.

Each browser tab is a gradio session with its own state (its photo, its result, its files);
pipelines are shared, built once per settings (:mod:`f2n.app.pipelines`). The queue runs one
photo at a time per worker. Gradio must be imported after :func:`f2n.app.cli.offline_environment`."""

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from f2n.app.figures import faces_picture, mask_heatmap, summary
from f2n.app.photo import PhotoRun, bicubic_x4, run_photo, save_outputs
from f2n.app.pipelines import ENGINES, PRIOR_NAMES, PipelineCache, Settings
from f2n.errors import F2NError
from f2n.runtime.images import read_image

COMPARE_BASE, COMPARE_BICUBIC = "base network", "bicubic x4"
# system fonts only: gradio's default theme fetches its fonts from Google
THEME = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


@dataclass(frozen=True)
class AppConfig:
    """The server's settings: the network every photo uses, the defaults of the page's controls,
    and the limits on an upload (``max_pixels``: decoded size, checked from the header)."""

    checkpoint: str = "realesrgan-x4plus"
    prior: str = "gpen"
    engine: str = "auto"
    device: str | None = None
    steps: int = 10
    adapt: bool = True
    max_pixels: int = 4_000_000
    workdir: Path = Path(tempfile.gettempdir())


@dataclass
class Shown:
    """One session's last result: what the slider switches between, and its files' folder."""

    adapted: np.ndarray
    base: np.ndarray
    lq: np.ndarray
    folder: Path


def _uint8(rgb: np.ndarray) -> np.ndarray:
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _slider(shown: Shown, compare: str) -> tuple[np.ndarray, np.ndarray]:
    other = shown.base if compare == COMPARE_BASE else bicubic_x4(shown.lq)
    return _uint8(shown.adapted), _uint8(other)


def build_page(config: AppConfig, pipelines: PipelineCache) -> gr.Blocks:
    with gr.Blocks(title="f2n: face-guided x4 super-resolution", analytics_enabled=False,
                   delete_cache=(3600, 3600)) as page:
        shown = gr.State(None)
        gr.Markdown("## f2n — adapt x4 super-resolution to one photo from its faces")
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label="Photo (PNG, JPEG, TIFF, WebP, BMP)", file_count="single", type="filepath",
                                 elem_id="f2n-upload")
                prior = gr.Dropdown(list(dict.fromkeys([config.prior, *PRIOR_NAMES])), value=config.prior,
                                    label="Face prior", allow_custom_value=True)
                engine = gr.Dropdown(list(ENGINES), value=config.engine, label="Engine")
                steps = gr.Slider(1, 50, value=config.steps, step=1, label="Adaptation steps (at most)")
                adapt = gr.Checkbox(value=config.adapt, label="Adapt to the photo's faces (off: base network only)")
                guard = gr.Checkbox(value=True, label="Guard: keep the base network when adapting does not help")
                run = gr.Button("Upscale x4", variant="primary", elem_id="f2n-run")
                message = gr.Markdown(elem_id="f2n-message")
            with gr.Column(scale=2):
                compare = gr.Radio([COMPARE_BASE, COMPARE_BICUBIC], value=COMPARE_BASE,
                                   label="Compare the adapted result with")
                slider = gr.ImageSlider(label="adapted | comparison", format="png", elem_id="f2n-slider",
                                        buttons=["fullscreen"])
                with gr.Row():
                    faces = gr.Image(label="Faces found (green: used, red: rejected)", format="png", buttons=[])
                    heatmap = gr.Image(label="MaskNet weight of each face patch pair", format="png", buttons=[])
                figures = gr.Markdown(elem_id="f2n-figures")
                downloads = gr.File(label="Downloads: PNG, JSON report, θ′", file_count="multiple",
                                    elem_id="f2n-downloads", interactive=False)

        def enhance(path: str | None, prior_spec: str, engine_name: str, step_count: float, adapt_on: bool,
                    guard_on: bool, compare_with: str, previous: Shown | None,
                    progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:  # noqa: B008 (gradio's way)
            unchanged = (gr.skip(),) * 6
            if not path:
                return ("Choose a photo first.", *unchanged)
            name = Path(path).name
            try:
                image = read_image(path, max_pixels=config.max_pixels)
                progress(0.0, desc="loading the network and the face prior (once per settings)")
                pipeline = pipelines.get(Settings(checkpoint=config.checkpoint, prior=prior_spec, engine=engine_name,
                                                  device=config.device, steps=int(step_count), adapt=adapt_on,
                                                  guard=guard_on))
                result = run_photo(pipeline, image, name, progress=lambda done, what: progress(done, desc=what))
                folder = Path(tempfile.mkdtemp(prefix="run-", dir=config.workdir))
                files = save_outputs(result, folder)
            except F2NError as error:  # a bad upload or setting: one line in the page, the last result stays
                return (f"**Cannot use {name}:** {str(error).replace(path, name)}", *unchanged)
            if previous is not None:
                shutil.rmtree(previous.folder, ignore_errors=True)
            now = _shown(result, folder)
            return ("", _slider(now, compare_with), faces_picture(image.rgb, result.enhanced.faces),
                    mask_heatmap(image.rgb, result.enhanced.faces), summary(result.report),
                    [str(path) for path in files.values()], now)

        run.click(enhance, [upload, prior, engine, steps, adapt, guard, compare, shown],
                  [message, slider, faces, heatmap, figures, downloads, shown], concurrency_limit=1)
        compare.change(lambda choice, now: _slider(now, choice) if now is not None else gr.skip(),
                       [compare, shown], slider, queue=False)
    return page


def _shown(result: PhotoRun, folder: Path) -> Shown:
    return Shown(result.enhanced.rgb, result.base, result.image.rgb, folder)
