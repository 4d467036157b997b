"""`tenku serve` against the official `openai` package, unchanged, on a live server."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

from tenku.cli import main
from tenku.io import read_video
from tenku.safety.verify import verify_video
from tenku.safety.visible import VisibleOptions, apply_visible
from tenku.serve import Plan
from tenku.serve.notify import sign
from test_serve_support import FAST, PLAN, SMALL, serve, tiny_model

# the client marks its video methods deprecated (OpenAI's service shut down); tenku serves them
pytestmark = pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    model = tiny_model(tmp_path_factory.mktemp("model"))
    with serve(tmp_path_factory.mktemp("data"), model) as running:
        yield running


def client(stack, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key=token, max_retries=0)


def make(c: openai.OpenAI, prompt: str = "a red ball bounces", **extra) -> object:
    return c.videos.create_and_poll(
        prompt=prompt, **SMALL, extra_body={**FAST, **extra}, poll_interval_ms=50
    )


def png(color=(200, 30, 30), size=(64, 64)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def test_create_poll_list_download_remix_delete(stack, tmp_path):
    c = client(stack, stack.key())
    video = make(c, seed=7)
    assert video.status == "completed" and video.progress == 100 and video.object == "video"
    assert video.model == "tiny-random" and video.size == "64x64" and video.seconds == "0.5"
    assert video.completed_at >= video.created_at and video.expires_at > video.completed_at
    assert c.videos.retrieve(video.id).status == "completed"
    c.videos.download_content(video.id).write_to_file(tmp_path / "v.mp4")
    clip = read_video(tmp_path / "v.mp4")
    assert clip.frames.shape == (5, 64, 64, 3) and clip.frames.std() > 0
    manifest = verify_video(tmp_path / "v.mp4", watermark=False).manifest  # published: signed
    assert manifest.valid and manifest.tenku["video_id"] == video.id
    thumb = c.videos.download_content(video.id, variant="thumbnail").content
    sheet = c.videos.download_content(video.id, variant="spritesheet").content
    assert Image.open(io.BytesIO(thumb)).format == "WEBP"
    assert Image.open(io.BytesIO(sheet)).size == (5 * 64, 64)

    remix = c.videos.remix(video.id, prompt="a blue ball bounces")
    assert remix.remixed_from_video_id == video.id and remix.status == "queued"
    done = c.videos.poll(remix.id, poll_interval_ms=50)
    assert done.status == "completed" and done.size == "64x64"
    stored = stack.store.get(None, remix.id)["request"]
    assert stored["remix"]["path"].startswith(f"videos/{video.id}/")
    c.videos.download_content(remix.id).write_to_file(tmp_path / "r.mp4")
    (source,) = verify_video(tmp_path / "r.mp4", watermark=False).manifest.tenku["ingredients"]
    assert source["role"] == "remix" and source["file"] == "video-0.mp4"

    assert c.videos.delete(remix.id).deleted
    with pytest.raises(openai.NotFoundError) as error:
        c.videos.retrieve(remix.id)
    assert error.value.body["param"] == "video_id"
    assert not (stack.data / "videos" / remix.id).exists()


def test_list_paginates_with_cursor_and_order(stack):
    c = client(stack, stack.key())
    ids = [c.videos.create(prompt=f"ball {i}", **SMALL, extra_body=FAST).id for i in range(5)]
    page = c.videos.list(limit=2)
    assert [v.id for v in page.data] == ids[::-1][:2] and page.has_more
    # the client follows `last_id` as `after` by itself
    assert [v.id for v in c.videos.list(limit=2)] == ids[::-1]
    assert [v.id for v in c.videos.list(order="asc", after=ids[1], limit=10)] == ids[2:]
    with pytest.raises(openai.BadRequestError) as error:
        c.videos.list(after="video_doesnotexist")
    assert error.value.body["param"] == "after"


def test_keys_cannot_see_each_others_videos(stack):
    alice, bob = client(stack, stack.key()), client(stack, stack.key())
    video = alice.videos.create(prompt="a secret square", **SMALL, extra_body=FAST)
    for call in (
        lambda: bob.videos.retrieve(video.id),
        lambda: bob.videos.download_content(video.id),
        lambda: bob.videos.delete(video.id),
        lambda: bob.videos.remix(video.id, prompt="mine now"),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    assert video.id not in [v.id for v in bob.videos.list()]
    with pytest.raises(openai.AuthenticationError) as error:
        client(stack, "tk-wrong").videos.list()
    assert error.value.body["code"] == "invalid_api_key"


def test_input_reference_upload_is_the_first_frame(stack):
    c = client(stack, stack.key())
    video = c.videos.create_and_poll(
        prompt="a red square",
        input_reference=("first.png", png(), "image/png"),
        **SMALL,
        extra_body=FAST,
        poll_interval_ms=50,
    )
    assert video.status == "completed" and video.task == "image-to-video"
    (keyframe,) = stack.store.get(None, video.id)["request"]["keyframes"]
    assert keyframe["at"] == 0.0 and keyframe["path"] == f"uploads/{video.id}/0.png"
    assert np.asarray(Image.open(stack.data / keyframe["path"])).mean(axis=(0, 1))[0] == 200


def test_tenku_tasks_map_onto_request_fields(stack, tmp_path):
    c = client(stack, stack.key())
    source = make(c)
    variations = make(c, variations=2, seed=3)
    a = c.videos.download_content(variations.id, extra_query={"index": 0}).content
    b = c.videos.download_content(variations.id, extra_query={"index": 1}).content
    assert variations.variations == 2 and a != b
    extended = c.videos.extend(
        prompt="it keeps going",
        seconds="1",
        video=("clip.mp4", c.videos.download_content(source.id).content, "video/mp4"),
    )
    assert extended.seconds == "1.5" and extended.task == "keyframes"
    with httpx.Client(base_url=stack.url, headers={"Authorization": c.api_key}) as raw:
        raw.headers["Authorization"] = f"Bearer {c.api_key}"
        by_id = raw.post(
            "/v1/videos/extensions",
            json={
                "prompt": "lead in",
                "seconds": 1,
                "video": {"id": source.id},
                "direction": "backward",
            },
        ).json()
        assert by_id["seconds"] == "1.5" and by_id["remixed_from_video_id"] == source.id
        request = stack.store.get(None, by_id["id"])["request"]
        assert request["keyframes"][0]["at"] == 1.0
        board = raw.post(
            "/v1/videos",
            json={
                "prompt": "a ball",
                "seconds": 2,
                "size": "64x64",
                "steps": 2,
                "loop": True,
                "cards": [{"at": 0, "prompt": "a red ball"}, {"at": 1, "prompt": "a blue ball"}],
            },
        ).json()
        assert board["task"] == "storyboard"
        blend = raw.post(
            "/v1/videos",
            json={
                "prompt": "a red ball",
                **SMALL,
                "blend": {"prompt": "a green cube", "video_ids": [source.id, source.id]},
            },
        ).json()
        assert blend["task"] == "blend"
        stored = stack.store.get(None, blend["id"])["request"]["blend"]
        assert stored["videos"][0].startswith(f"videos/{source.id}/")
        edit = raw.post("/v1/videos/edits", json={"prompt": "green", "video": {"id": source.id}})
        assert edit.json()["task"] == "video-to-video"
    # every task runs through the worker's backend to a completed video
    for job in (extended.id, by_id["id"], board["id"], blend["id"], edit.json()["id"]):
        done = c.videos.poll(job, poll_interval_ms=50)
        assert done.status == "completed", (done.task, done.error)
    with httpx.Client(base_url=stack.url) as raw:
        spec = raw.get("/openapi.json").json()
        assert "cards" in spec["components"]["schemas"]["CreateVideoBody"]["properties"]
        assert raw.get("/docs").status_code == 200


def test_work_by_id_starts_from_the_clean_original(stack, tmp_path):
    """Extending or remixing a video by its id reads the unmarked original its worker kept
    beside the published file (lossless, never served): the new video carries one mark, not
    the source's under its own, and the frames an extension keeps are the model's, exactly."""
    c = client(stack, stack.key())
    source = make(c, seed=5)
    rel = stack.store.get(None, source.id)["result"]["dir"]
    clean = read_video(stack.data / rel / "original-0.mkv").frames  # (5, 64, 64, 3)
    marked = read_video(stack.data / rel / "video-0.mp4").frames
    assert clean.shape == marked.shape == (5, 64, 64, 3)
    assert np.abs(marked.astype(int) - clean).max() > 40  # the published file carries the mark
    with httpx.Client(base_url=stack.url) as raw:
        raw.headers["Authorization"] = f"Bearer {c.api_key}"
        body = {"prompt": "it goes on", "seconds": 0.5, "video": {"id": source.id}}
        extension = raw.post("/v1/videos/extensions", json={**body, "seed": 1}).json()
    remix = c.videos.remix(source.id, prompt="a blue ball bounces")
    for job in (extension["id"], remix.id):
        assert c.videos.poll(job, poll_interval_ms=50).status == "completed"
    ext = stack.store.get(None, extension["id"])
    assert ext["request"]["keyframes"][0]["path"] == f"{rel}/original-0.mkv"
    assert stack.store.get(None, remix.id)["request"]["remix"]["path"] == f"{rel}/original-0.mkv"
    made = read_video(stack.data / ext["result"]["dir"] / "original-0.mkv").frames
    np.testing.assert_array_equal(made[:5], clean)  # kept exactly: no mark, no H.264 loss
    published = read_video(stack.data / ext["result"]["dir"] / "video-0.mp4").frames
    single = apply_visible(clean, 8.0, VisibleOptions()).astype(int)  # one mark, unencoded
    double = apply_visible(marked, 8.0, VisibleOptions()).astype(int)  # a mark on the mark
    mark = np.abs(single - clean).max(axis=-1) > 20  # (5, 64, 64): where the mark is
    once, twice = (np.abs(published[:5] - f)[mark].mean() for f in (single, double))
    assert once < twice / 2, (once, twice)  # measured 8.3 against 25
    c.videos.download_content(extension["id"]).write_to_file(tmp_path / "e.mp4")
    (given,) = verify_video(tmp_path / "e.mp4", watermark=False).manifest.tenku["ingredients"]
    assert given["file"] == "video-0.mp4"  # the ingredient is the file the caller knows
    with pytest.raises(openai.BadRequestError):  # the original is never served
        c.videos.download_content(source.id, variant="original")


def test_quotas_answer_429_naming_the_limit(stack):
    tight = Plan("tight", 2, 3600, 64, 1.0, 1)
    c = client(stack, stack.key(tight))
    with pytest.raises(openai.RateLimitError) as error:
        c.videos.create(prompt="big", seconds="0.5", size="128x128")
    assert error.value.body["param"] == "size" and "at most 64" in error.value.body["message"]
    with pytest.raises(openai.RateLimitError) as error:
        c.videos.create(prompt="long", seconds="2", size="64x64")
    assert error.value.body["param"] == "seconds"
    first = c.videos.create(prompt="one", **SMALL, extra_body=FAST)
    if c.videos.retrieve(first.id).status in ("queued", "in_progress"):
        with pytest.raises(openai.RateLimitError) as error:
            c.videos.create(prompt="two at once", **SMALL, extra_body=FAST)
        assert error.value.body["code"] == "concurrency_limit_exceeded"
    c.videos.poll(first.id, poll_interval_ms=50)
    c.videos.create_and_poll(prompt="two", **SMALL, extra_body=FAST, poll_interval_ms=50)
    with pytest.raises(openai.RateLimitError) as error:
        c.videos.create(prompt="three", **SMALL, extra_body=FAST)
    assert error.value.body["code"] == "quota_exceeded" and "2 videos per 3600 s" in str(
        error.value
    )


def test_event_stream_and_signed_webhook(stack):
    received: list[tuple[dict, bytes]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    hook = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    try:
        token = stack.key(webhook_url=f"http://127.0.0.1:{hook.server_port}/hook")
        secret = stack.store.key_for_token(token).webhook_secret
        events: list[tuple[str, dict]] = []
        with (
            httpx.Client(base_url=stack.url, timeout=30) as raw,
            raw.stream("GET", "/v1/events", headers={"Authorization": f"Bearer {token}"}) as stream,
        ):
            video = client(stack, token).videos.create(prompt="a ball", **SMALL, extra_body=FAST)
            name = None
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    events.append((name, json.loads(line[6:])))
                    if name == "video.completed":
                        break
        assert events[0][1]["id"] == video.id and events[-1][1]["progress"] == 100
        # states, not transitions: a state replaced within one poll (0.25 s) is not sent
        assert {n for n, _ in events} <= {"video.queued", "video.in_progress", "video.completed"}
        deadline = time.monotonic() + 10
        while not received and time.monotonic() < deadline:
            time.sleep(0.05)
        headers, body = received[0]
        event = json.loads(body)
        assert event["type"] == "video.completed" and event["data"]["id"] == video.id
        expected = sign(secret, headers["webhook-id"], int(headers["webhook-timestamp"]), body)
        assert hmac.compare_digest(headers["webhook-signature"], expected)
        digest = hmac.new(
            secret.encode(),
            f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body,
            hashlib.sha256,
        ).digest()
        assert headers["webhook-signature"] == "v1," + base64.b64encode(digest).decode()
    finally:
        hook.shutdown()


def test_admin_commands_create_plans_and_keys(tmp_path, capsys):
    data = str(tmp_path / "d")
    assert main(["plans", "create", "pro", "--videos-per-period", "5", "--data", data]) == 0
    assert main(["keys", "create", "--plan", "pro", "--name", "ci", "--data", data]) == 0
    token = capsys.readouterr().out.split("token")[1].split()[0]
    assert main(["keys", "list", "--data", data]) == 0
    assert "plan=pro" in capsys.readouterr().out
    assert main(["keys", "create", "--plan", "nope", "--data", data]) == 2
    assert "plan: no plan named 'nope'" in capsys.readouterr().err
    from tenku.serve import JobStore

    key = JobStore(tmp_path / "d" / "tenku.db").key_for_token(token)
    assert key is not None and key.plan.videos_per_period == 5 and key.name == "ci"
    assert PLAN.name != key.plan.name
