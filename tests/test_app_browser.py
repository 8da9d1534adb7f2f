"""f2n-app in a real browser: the command serves the page on 127.0.0.1, Playwright drives Debian's
chromium (Playwright's own browser download is not reachable here), a real photo goes through,
both slider images are 4x the photo, the downloaded PNG is a valid 4x image, a bad file gives
one message in the page and the last result stays, a second tab sees none of it, and the page
fetched nothing from elsewhere.

Cheap on purpose (adaptation off, a small crop): the adaptation itself is tested through the
same f2n.app code by tests/test_comfyui_nodes.py."""

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import cv2
import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SLIDER_READY = ("() => document.querySelectorAll('#f2n-slider img').length >= 2 && [...document"
                ".querySelectorAll('#f2n-slider img')].every(i => i.complete && i.naturalWidth > 0)")
START_SECONDS = 180  # the server imports gradio and loads x4plus before it listens: slow on a busy 2-core machine


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_listening(port: int, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"f2n-app exited with {server.returncode}: {server.stdout.read()}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    pytest.fail(f"f2n-app did not listen on port {port} within {START_SECONDS} s")


@pytest.fixture()
def app_url(real_sr_weights: Path, tmp_path: Path) -> Iterator[str]:
    if CHROMIUM is None:
        message = "no chromium on PATH (apt-get install chromium; .ci/run installs it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}; CI=true, so this is an error, not a skip")
        pytest.skip(message)
    pytest.importorskip("gradio", reason="f2n-app needs the app extra: pip install '.[app]'")
    port = free_port()
    command = [sys.executable, "-c", "from f2n.app.cli import main; main()", "--port", str(port),
               "--checkpoint", str(real_sr_weights), "--engine", "torch", "--device", "cpu", "--no-adapt"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    try:
        wait_listening(port, server)
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def slider_sizes(page) -> list[tuple[int, int]]:
    return page.evaluate("""() => [...document.querySelectorAll('#f2n-slider img')]
        .filter(img => img.complete && img.naturalWidth > 0).map(img => [img.naturalWidth, img.naturalHeight])""")


def test_a_photo_goes_through_the_page_in_chromium(app_url: str, shared_data: Path, tmp_path: Path) -> None:
    sync_playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright").sync_playwright
    photo = tmp_path / "lincoln_crop.png"  # 40 x 32 px of a real old photo, around the face
    cv2.imwrite(str(photo), cv2.imread(str(shared_data / "real_lq" / "Lincoln.png"))[40:72, 60:100])
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture\n")
    requested: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("request", lambda request: requested.append(request.url))
            page.goto(app_url)
            page.locator("#f2n-upload input[type=file]").set_input_files(str(photo))
            page.locator("#f2n-upload a[download]").wait_for()  # uploaded
            page.locator("#f2n-run").click()
            page.wait_for_function(SLIDER_READY, timeout=120_000)
            assert slider_sizes(page) == [[160, 128], [160, 128]]  # adapted | base, both 4x the 40 x 32 photo
            assert "faces found" in page.locator("#f2n-figures").inner_text()
            link = page.locator("#f2n-downloads a[download='lincoln_crop_x4.png']")
            with page.expect_download() as download:
                link.click()
            with Image.open(download.value.path()) as png:
                assert (png.format, png.size) == ("PNG", (160, 128))
                png.load()  # decodes fully: a truncated file raises here
            # a bad file: one message in the page, the last result stays
            page.locator("#f2n-upload button[aria-label='Clear']").first.click()
            page.locator("#f2n-upload input[type=file]").set_input_files(str(bad))
            page.locator("#f2n-upload a[download]").wait_for()
            page.locator("#f2n-run").click()
            message = page.locator("#f2n-message")
            message.filter(has_text="Cannot use notes.png").wait_for(timeout=30_000)
            assert "not an image file" in message.inner_text() and "Traceback" not in page.content()
            assert slider_sizes(page) == [[160, 128], [160, 128]]
            # a second tab is a session of its own: none of the first one's photo, result or files
            other = browser.new_context().new_page()
            other.goto(app_url)
            other.locator("#f2n-run").wait_for()
            assert slider_sizes(other) == [] and other.locator("#f2n-downloads a[download]").count() == 0
            assert "lincoln_crop" not in other.content()
        finally:
            browser.close()
    elsewhere = {urlparse(url).hostname for url in requested if urlparse(url).scheme in ("http", "https", "ws", "wss")}
    assert elsewhere == {"127.0.0.1"}, elsewhere  # offline: no fonts, scripts or analytics from elsewhere


def test_without_gradio_the_command_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from click.testing import CliRunner

    from f2n.app.cli import main

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else real_find_spec(name, *a))
    result = CliRunner().invoke(main, ["--port", str(free_port())])
    assert result.exit_code == 5 and result.output.strip().splitlines() == [
        'error: f2n-app needs gradio: pip install "f2n[app]" (or ".[app]" in a checkout)']
