"""The screenshot in docs/app.md and the README: f2n-app after one photo went through, taken in
Debian's chromium through Playwright. Start the app first, then

    python scripts/app_screenshot.py http://127.0.0.1:7860/ photo.png docs/app-screenshot.png

(docs/app.md names the photo and the app's options used for the committed one).
"""

import sys

from playwright.sync_api import sync_playwright

SLIDER_READY = ("() => document.querySelectorAll('#f2n-slider img').length >= 2 && "
                "[...document.querySelectorAll('#f2n-slider img')].every(i => i.complete && i.naturalWidth > 0)")


def main(url: str, photo: str, out: str, chromium: str = "/usr/bin/chromium") -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        page.locator("#f2n-upload input[type=file]").set_input_files(photo)
        page.locator("#f2n-upload a[download]").wait_for()
        page.locator("#f2n-run").click()
        page.wait_for_function(SLIDER_READY, timeout=590_000)
        page.wait_for_timeout(1500)  # the heat map and figures render after the slider
        page.screenshot(path=out, full_page=True)
        browser.close()


if __name__ == "__main__":
    main(*sys.argv[1:4])
