"""``f2n-app``: the local web page (``pip install ".[app]"``). Offline by default: no analytics or
update checks, system fonts, served on 127.0.0.1 unless ``--host`` says otherwise."""

import importlib.util
import os
import tempfile
from pathlib import Path

import click

from f2n.app.pipelines import ENGINES
from f2n.errors import ConfigError, one_line_errors

OFFLINE = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1", "GRADIO_SSR_MODE": "False"}


def offline_environment() -> None:
    """Before gradio is imported: it reads these once (analytics and version checks call home)."""
    for key, value in OFFLINE.items():
        os.environ.setdefault(key, value)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="address to serve on; 0.0.0.0 opens the page to the network, with no login")
@click.option("--port", type=click.IntRange(1, 65535), default=7860, show_default=True)
@click.option("--checkpoint", default="realesrgan-x4plus", show_default=True, help="SR weights: registry name or file")
@click.option("--prior", default="gpen", show_default=True, help="the page's default face prior (any --prior spec)")
@click.option("--engine", type=click.Choice(ENGINES), default="auto", show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None, help="[cuda when present]")
@click.option("--steps", type=click.IntRange(1, 50), default=10, show_default=True,
              help="the page's default step budget")
@click.option("--no-adapt", is_flag=True, help="the page starts with adaptation off (base network only)")
@click.option("--max-pixels", type=click.IntRange(1), default=4_000_000, show_default=True,
              help="largest photo accepted, in decoded pixels (x4 output is 16 times that)")
@click.option("--max-upload-mb", type=click.IntRange(1), default=50, show_default=True)
@click.option("--queue-size", type=click.IntRange(1), default=16, show_default=True,
              help="photos waiting beyond the one running; more are turned away")
@one_line_errors
def main(host: str, port: int, checkpoint: str, prior: str, engine: str, device: str | None, steps: int,
         no_adapt: bool, max_pixels: int, max_upload_mb: int, queue_size: int) -> None:
    """Serve f2n's web page: upload a photo, compare adapted and base x4, download the results."""
    offline_environment()
    if importlib.util.find_spec("gradio") is None:
        raise ConfigError('f2n-app needs gradio: pip install "f2n[app]" (or ".[app]" in a checkout)')
    from f2n.app.pipelines import PipelineCache, Settings
    from f2n.app.ui import THEME, AppConfig, build_page

    pipelines = PipelineCache()
    # weights and engine load now: a bad --checkpoint fails here, not at the first photo
    pipelines.get(Settings(checkpoint=checkpoint, prior=prior, engine=engine, device=device, steps=steps,
                           adapt=not no_adapt))
    with tempfile.TemporaryDirectory(prefix="f2n-app-") as workdir:
        config = AppConfig(checkpoint=checkpoint, prior=prior, engine=engine, device=device, steps=steps,
                           adapt=not no_adapt, max_pixels=max_pixels, workdir=Path(workdir))
        page = build_page(config, pipelines).queue(default_concurrency_limit=1, max_size=queue_size)
        click.echo(f"f2n-app: http://{host}:{port} (Ctrl-C stops it)")
        try:
            page.launch(server_name=host, server_port=port, share=False, inbrowser=False, quiet=True,
                        max_file_size=f"{max_upload_mb}mb", theme=THEME, ssr_mode=False, footer_links=[])
        except OSError as error:  # the port is taken
            raise ConfigError(f"cannot serve on {host}:{port}: {error}") from None
