"""The studio in a real headless Chromium: submit a prompt, watch it finish, play it.

Needs Debian's Chromium at /usr/bin/chromium (`apt-get install chromium`), driven by the
`playwright` package (no browser download). Set TENKU_STUDIO_SCREENSHOTS=docs/img to refresh
the screenshots in the docs.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from test_serve_support import serve, tiny_model

CHROMIUM = os.environ.get("TENKU_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser():
    path = CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium")
    if path is None:
        pytest.fail(
            f"the studio test needs Chromium at {CHROMIUM}: run `apt-get install chromium` "
            "(Debian/Ubuntu), or set TENKU_CHROMIUM to a Chromium binary",
            pytrace=False,
        )
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=path, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def test_studio_generates_plays_and_remixes(browser, tmp_path):
    shots = Path(os.environ.get("TENKU_STUDIO_SCREENSHOTS", tmp_path))
    with serve(tmp_path / "data", tiny_model(tmp_path / "model")) as stack:
        token = stack.key()
        page = browser.new_page(viewport={"width": 1200, "height": 860})
        errors: list[str] = []
        outside: list[str] = []  # the page must load nothing from anywhere but the server
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on(
            "request",
            lambda r: (
                None if r.url.startswith((stack.url, "blob:", "data:")) else outside.append(r.url)
            ),
        )
        page.goto(stack.url)
        assert page.title() == "tenku studio"
        page.fill("#api-key", token)
        page.dispatch_event("#api-key", "change")
        page.wait_for_function("document.querySelector('#model').textContent.includes('tiny')")
        page.fill("#prompt", "a red ball bounces on a white background")
        page.select_option("#resolution", "64")
        page.fill("#seconds", "1")
        page.fill("#steps", "2")
        page.fill("#seed", "3")
        page.click("#generate")
        page.wait_for_selector(".tile.status-completed .thumb img", timeout=60_000)
        plays = (
            "(() => { const v = document.querySelector('#player');"
            " return v.readyState >= 2 && !v.paused && v.currentTime > 0; })()"
        )
        page.wait_for_function(plays, timeout=30_000)
        width = page.eval_on_selector("#player", "v => v.videoWidth")
        thumb = page.eval_on_selector(".tile .thumb img", "i => i.naturalWidth")
        assert width == 64 and thumb == 64
        assert page.get_attribute("#message", "class") != "error", page.inner_text("#message")
        page.screenshot(path=str(shots / "studio.png"))

        page.once("dialog", lambda d: d.accept("a blue ball bounces"))
        page.click("#remix")
        page.wait_for_function(
            "document.querySelectorAll('.tile.status-completed').length == 2", timeout=60_000
        )
        assert "from video_" in page.inner_text("#details")
        page.click("#toggle-board")
        page.fill("#cards li:nth-child(2) .card-prompt", "the ball turns blue")
        page.screenshot(path=str(shots / "studio-storyboard.png"))
        page.goto(f"{stack.url}/docs")  # the API docs: Swagger UI from package files
        page.get_by_text("/v1/videos/{video_id}/remix").wait_for(timeout=30_000)
        assert not errors, errors
        assert not outside, outside
        (first,) = [
            v
            for v in stack.store.list(stack.store.list_keys()[-1].id)[0]
            if not v["info"]["remixed_from_video_id"]
        ]
        assert first["request"]["seed"] == 3 and first["info"]["size"] == "64x64"
