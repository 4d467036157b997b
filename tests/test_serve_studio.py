"""The studio in a real headless Chromium: submit a prompt, watch it finish, play it.

Needs Debian's Chromium at /usr/bin/chromium (`apt-get install chromium`), driven by the
`playwright` package (no browser download). Set TENKU_STUDIO_SCREENSHOTS=docs/img to refresh
the screenshots in the docs: that run uses the shipped default model (a 2 s 128x128 clip at the
model's own steps, a minute or two of CPU) instead of the tiny random one.
"""

from __future__ import annotations

import os
import re
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


# Records every text the status line shows, in order.
WATCH_STATUS = """() => {
  window.said = [];
  new MutationObserver(() => window.said.push(
    document.querySelector('#message').className + ': ' +
    document.querySelector('#message-text').textContent)
  ).observe(document.querySelector('#message'), {subtree: true, childList: true,
    characterData: true, attributes: true});
}"""


def settle(page, shipped: bool) -> None:
    """For the docs' pictures: let the player's controls fade and the bars finish growing."""
    if shipped:
        page.mouse.move(5, 5)
        page.wait_for_timeout(3500)


def test_studio_generates_plays_and_remixes(browser, tmp_path):
    shipped = "TENKU_STUDIO_SCREENSHOTS" in os.environ  # the docs' pictures: the real model
    shots = Path(os.environ.get("TENKU_STUDIO_SCREENSHOTS", tmp_path))
    side = 128 if shipped else 64
    model = None if shipped else tiny_model(tmp_path / "model")
    with serve(tmp_path / "data", model) as stack:
        token = stack.key()
        page = browser.new_page(viewport={"width": 1200, "height": 860})
        errors: list[str] = []
        outside: list[str] = []  # the page must load nothing from anywhere but the server
        missing: list[str] = []  # nor ask for anything that is not there (favicon.ico)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on(
            "request",
            lambda r: (
                None if r.url.startswith((stack.url, "blob:", "data:")) else outside.append(r.url)
            ),
        )
        page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
        page.goto(stack.url)
        assert page.title() == "tenku studio"
        # the first visit, before any key: a hint pointing to the key box, no error
        page.wait_for_selector("#message.hint")
        assert "API key box" in page.inner_text("#message")
        assert "attention" in page.get_attribute("label.key", "class")
        page.fill("#api-key", token)
        page.dispatch_event("#api-key", "change")
        name = "tenku-world-xs" if shipped else "tiny-random"
        page.wait_for_function(f"document.querySelector('#model').textContent.includes('{name}')")
        assert page.get_attribute("#message", "class") == "" and not page.inner_text("#message")
        page.fill("#prompt", "a red ball bounces on a white background")
        page.select_option("#resolution", str(side))
        page.fill("#seconds", "2" if shipped else "1")
        if not shipped:
            page.fill("#steps", "6")  # long enough to be seen in progress
        page.fill("#seed", "3")
        page.evaluate(WATCH_STATUS)
        page.click("#generate")
        page.wait_for_selector(".tile.status-completed .thumb img", timeout=300_000)
        # the status line followed the job from the event stream to a finished state
        page.wait_for_selector("#message.done", timeout=30_000)
        said = page.evaluate("window.said")
        stages = ["Queued", "Generating", "Done"]
        firsts = [next((i for i, t in enumerate(said) if stage in t), -1) for stage in stages]
        assert -1 not in firsts and firsts == sorted(firsts), said
        assert re.search(r"Generating: \d+%", " ".join(said)), said
        assert not any(t.startswith("error") for t in said), said
        plays = (
            "(() => { const v = document.querySelector('#player');"
            " return v.readyState >= 2 && !v.paused && v.currentTime > 0; })()"
        )
        page.wait_for_function(plays, timeout=30_000)
        width = page.eval_on_selector("#player", "v => v.videoWidth")
        thumb = page.eval_on_selector(".tile .thumb img", "i => i.naturalWidth")
        assert width == side and thumb == side
        assert page.get_attribute("#message", "class") != "error", page.inner_text("#message")
        settle(page, shipped)
        page.screenshot(path=str(shots / "studio.png"))

        page.once("dialog", lambda d: d.accept("a blue ball bounces"))
        page.click("#remix")
        page.wait_for_function(
            "document.querySelectorAll('.tile.status-completed').length == 2", timeout=300_000
        )
        page.wait_for_selector("#message.done", timeout=30_000)
        assert "from video_" in page.inner_text("#details")
        page.click("#toggle-board")
        page.fill("#cards li:nth-child(1) .card-prompt", "a red ball moves to the right")
        page.fill("#cards li:nth-child(2) .card-prompt", "the ball turns blue")
        settle(page, shipped)
        page.screenshot(path=str(shots / "studio-storyboard.png"))
        page.goto(f"{stack.url}/docs")  # the API docs: Swagger UI from package files
        page.get_by_text("/v1/videos/{video_id}/remix").wait_for(timeout=30_000)
        assert not errors, errors
        assert not outside, outside
        assert not missing, missing
        icon = page.request.get(f"{stack.url}/favicon.ico")  # for pages that link none
        assert icon.ok and icon.headers["content-type"] == "image/svg+xml"
        (first,) = [
            v
            for v in stack.store.list(stack.store.list_keys()[-1].id)[0]
            if not v["info"]["remixed_from_video_id"]
        ]
        assert first["request"]["seed"] == 3 and first["info"]["size"] == f"{side}x{side}"
