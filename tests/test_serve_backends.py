"""Open-weight backends behind `POST /v1/videos`: tiny random Wan, LTX-Video and CogVideoX
folders served by a live `tenku serve`, driven by the official `openai` client, offline."""

from __future__ import annotations

import io

import openai
import pytest
from PIL import Image

from tenku.io import read_video
from tenku.pipelines.tiny import save_tiny
from test_serve_support import serve

pytestmark = pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")


def png(size=(64, 64)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize(
    ("kind", "fps", "frames", "reference"),
    [
        ("wan", 16.0, 9, False),  # 0.5 s at 16 fps: 4k + 1 frames
        ("ltx", 24.0, 17, True),  # 8k + 1 frames near 12; the upload is the first frame
        ("cogvideox", 8.0, 9, False),  # 8k + 1 frames: 9 at 8 fps
    ],
)
def test_each_backend_serves_the_videos_api(kind, fps, frames, reference, tmp_path):
    folder = save_tiny(kind, tmp_path / kind)
    with serve(tmp_path / "data", folder) as stack:
        c = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.key(), max_retries=0)
        extra = {"input_reference": ("first.png", png(), "image/png")} if reference else {}
        video = c.videos.create_and_poll(
            prompt="a red ball bounces",
            seconds="0.5",
            size="64x64",
            extra_body={"steps": 2, "seed": 3},
            poll_interval_ms=50,
            **extra,
        )
        assert video.status == "completed", video.error
        assert video.task == ("image-to-video" if reference else "text-to-video")
        out = tmp_path / "out.mp4"
        c.videos.download_content(video.id).write_to_file(out)
        got = read_video(out)
        assert got.fps == pytest.approx(fps) and got.frames.shape == (frames, 64, 64, 3)
