"""Tests for tenku.io: round trips, colour accuracy, error messages and atomic writes."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

import tenku.io.video as video_module
from tenku.io import (
    Video,
    VideoReadError,
    VideoWriteError,
    probe,
    read_image,
    read_video,
    write_frames,
    write_image,
    write_video,
)

# Colour tolerances for the H.264 round trip at crf 18 (uint8 units, per channel), measured on
# the clips below with the av 18.1.0 wheel's libx264 (64x64 8 fps / 64x64 24 fps / 64x112 / 112x64):
# - interior (flat regions eroded by 2 px): max 17 / 32 / 15 / 18, mean 1.8 / 2.6 / 1.5 / 1.7.
#   The max is chroma ringing: a 4:2:0 chroma transform block spans 8-16 luma pixels, so edges
#   leak further than 2 px. The mean is what catches colour bugs: decoding these files with the
#   BT.601 matrix gives an interior mean of 7.2, and full instead of limited range 10.7.
# - mean colour of each flat region: off by at most 5.3.
# - whole frame mean: 7.7 / 8.6 / 6.4 / 6.9, dominated by 4:2:0 blurring colour edges
#   (6.6 even at crf 0, which is lossless in YUV; interior max there is 2).
CRF = 18
INTERIOR_MAX_ERR = 40
INTERIOR_MEAN_ERR = 3.5
REGION_MEAN_ERR = 8.0
FRAME_MEAN_ERR = 10.0
ERODE_PX = 2
# GIF: at most 9 flat colours per frame fit a 256-colour palette exactly (measured error 0).
GIF_MAX_ERR = 0

BACKGROUNDS = [(235, 235, 230), (128, 128, 128), (214, 200, 170), (18, 22, 45)]
OBJECTS = [
    (230, 40, 40),
    (245, 140, 20),
    (240, 220, 30),
    (40, 190, 60),
    (30, 200, 220),
    (40, 80, 230),
    (150, 50, 220),
    (240, 60, 180),
]


def make_clip(num_frames: int = 16, height: int = 64, width: int = 64) -> np.ndarray:
    """Flat saturated rectangles in a 2x4 grid, nudged each frame, on four flat backgrounds."""
    clip = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    cell_h, cell_w = height // 2, width // 4
    for t in range(num_frames):
        clip[t] = BACKGROUNDS[t * len(BACKGROUNDS) // num_frames]
        for k, colour in enumerate(OBJECTS):
            y = (k // 4) * cell_h + 3 + t % 3
            x = (k % 4) * cell_w + 2 + t % 2
            clip[t, y : y + cell_h - 8, x : x + cell_w - 5] = colour
    return clip


def interior_mask(clip: np.ndarray, radius: int = ERODE_PX) -> np.ndarray:
    """(T, H, W) bool: pixels whose (2r+1)^2 neighbourhood has the same colour."""
    height, width = clip.shape[1:3]
    padded = np.pad(clip, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode="edge")
    mask = np.ones(clip.shape[:3], dtype=bool)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            mask &= (padded[:, dy : dy + height, dx : dx + width] == clip).all(axis=-1)
    return mask


def assert_colours_close(decoded: np.ndarray, clip: np.ndarray) -> None:
    err = np.abs(decoded.astype(np.int16) - clip.astype(np.int16))
    inside = interior_mask(clip)
    assert inside.mean() > 0.3  # the erosion leaves plenty to measure
    assert err[inside].max() <= INTERIOR_MAX_ERR
    assert err[inside].mean() <= INTERIOR_MEAN_ERR
    assert err.mean() <= FRAME_MEAN_ERR
    for t in range(len(clip)):
        for colour in BACKGROUNDS + OBJECTS:
            region = inside[t] & (clip[t] == colour).all(axis=-1)
            if region.any():
                mean = decoded[t][region].mean(axis=0)
                assert np.abs(mean - colour).max() <= REGION_MEAN_ERR, (t, colour, mean)


@pytest.mark.parametrize(
    ("height", "width", "fps", "suffix"),
    [(64, 64, 8.0, ".mp4"), (64, 64, 24.0, ".mp4"), (64, 112, 8.0, ".mp4"), (112, 64, 8.0, ".mov")],
)
def test_h264_round_trip(tmp_path: Path, height: int, width: int, fps: float, suffix: str):
    clip = make_clip(height=height, width=width)
    path = write_video(tmp_path / "out" / f"clip{suffix}", clip, fps, crf=CRF)
    assert path == tmp_path / "out" / f"clip{suffix}"
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp left over

    info = probe(path)
    assert (info["codec"], info["pix_fmt"]) == ("h264", "yuv420p")
    assert (info["width"], info["height"], info["num_frames"]) == (width, height, 16)
    assert info["fps"] == fps
    assert info["duration"] == pytest.approx(16 / fps)
    assert (info["colorspace"], info["color_range"]) == ("bt709", "tv")
    assert info["color_primaries"] == info["color_trc"] == 1  # BT.709

    video = read_video(path)
    assert video.frames.shape == clip.shape
    assert video.frames.dtype == np.uint8
    assert video.fps == fps
    assert (video.num_frames, video.height, video.width) == (16, height, width)
    assert video.seconds == pytest.approx(16 / fps)
    assert_colours_close(video.frames, clip)


def test_mp4_is_faststart_and_tolerance_catches_wrong_matrix(tmp_path: Path):
    clip = make_clip()
    path = write_video(tmp_path / "clip.mp4", clip, 8.0)
    data = path.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # playable while downloading
    with av.open(str(path)) as container:
        wrong = np.stack(
            [f.to_ndarray(format="rgb24", src_colorspace=5) for f in container.decode(video=0)]
        )
    with pytest.raises(AssertionError):
        assert_colours_close(wrong, clip)  # BT.601 decode of a BT.709 file must fail the bounds


def test_untagged_sd_stream_is_read_as_bt601(tmp_path: Path):
    clip = make_clip()
    path = tmp_path / "untagged.mp4"
    with av.open(str(path), "w") as container:  # what a plain FFmpeg pipeline writes
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        stream.options = {"crf": str(CRF)}
        for rgb in clip:
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    assert probe(path)["colorspace"] == "unspecified"
    assert_colours_close(read_video(path).frames, clip)


def test_ntsc_rate_is_exact(tmp_path: Path):
    path = write_video(tmp_path / "ntsc.mp4", make_clip(num_frames=4), 30000 / 1001)
    assert read_video(path).fps == pytest.approx(30000 / 1001, abs=1e-9)


def test_gif_round_trip(tmp_path: Path):
    clip = make_clip()
    path = write_video(tmp_path / "clip.gif", clip, 8.0)
    assert probe(path)["codec"] == "gif"
    video = read_video(path)
    assert video.frames.shape == clip.shape
    assert video.fps == 8.0  # 125 ms delays alternate 120/130 ms, averaging exactly 8 fps
    err = np.abs(video.frames.astype(np.int16) - clip)
    assert err.max() <= GIF_MAX_ERR


def test_png_frames_round_trip_exactly(tmp_path: Path):
    clip = make_clip(num_frames=5, height=48, width=40)
    paths = write_frames(tmp_path / "frames", clip)
    assert [p.name for p in paths] == [f"frame_{i:05d}.png" for i in range(5)]
    (tmp_path / "frames" / ".frame_99999.png.tmp.png").write_bytes(b"half-written")  # skipped
    video = read_video(tmp_path / "frames", fps=12.0)
    np.testing.assert_array_equal(video.frames, clip)
    assert video.fps == 12.0
    np.testing.assert_array_equal(read_image(paths[3]), clip[3])


def test_single_png(tmp_path: Path):
    frame = make_clip(num_frames=1, height=20, width=30)
    path = write_video(tmp_path / "still.png", frame, 8.0)
    video = read_video(path)
    assert isinstance(video, Video)
    np.testing.assert_array_equal(video.frames, frame)
    assert (video.fps, video.seconds) == (8.0, 0.125)
    with pytest.raises(VideoWriteError, match="write_frames"):
        write_video(tmp_path / "many.png", make_clip(num_frames=2), 8.0)


def test_image_round_trip_and_jpeg(tmp_path: Path):
    image = make_clip(num_frames=1)[0]
    np.testing.assert_array_equal(read_image(write_image(tmp_path / "a" / "x.png", image)), image)
    jpeg = read_video(write_image(tmp_path / "x.jpg", image), fps=2.0)
    assert jpeg.frames.shape == (1, 64, 64, 3)
    assert jpeg.fps == 2.0


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("notes.txt", "".join(f"line {i} of notes\n" for i in range(500)), "ANSI art"),
        ("fake.mp4", "hello, not a video\n", "Invalid data"),
        ("empty.mp4", "", "empty file"),
        ("missing.mp4", None, "no such file"),
        ("broken.png", "not a png", "not an image file"),
    ],
)
def test_read_errors_name_the_path(tmp_path: Path, name: str, content: str | None, reason: str):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(VideoReadError, match=reason) as excinfo:
        read_video(path)
    assert str(path) in str(excinfo.value)


def test_read_errors_for_directories_and_audio(tmp_path: Path):
    empty = tmp_path / "no_frames"
    empty.mkdir()
    (empty / "readme.txt").write_text("no frames here")
    with pytest.raises(VideoReadError, match="no PNG frames") as excinfo:
        read_video(empty)
    assert str(empty) in str(excinfo.value)

    audio = tmp_path / "tone.wav"
    with av.open(str(audio), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        samples = np.zeros((1, 800), dtype=np.int16)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with pytest.raises(VideoReadError, match="no video stream") as excinfo:
        probe(audio)
    assert str(audio) in str(excinfo.value)


@pytest.mark.parametrize(
    ("name", "frames", "fps", "kwargs", "message"),
    [
        ("a.mp4", np.zeros((2, 16, 16), np.float32), 8.0, {}, r"frames: .*float32 \(2, 16, 16\)"),
        ("a.mp4", np.zeros((16, 16, 3), np.uint8), 8.0, {}, r"frames: .*\(T, H, W, 3\)"),
        ("a.mp4", np.zeros((2, 16, 16, 4), np.uint8), 8.0, {}, r"frames: .*\(2, 16, 16, 4\)"),
        ("a.mp4", np.zeros((0, 16, 16, 3), np.uint8), 8.0, {}, "frames: expected a non-empty"),
        ("a.mp4", np.zeros((2, 16, 17, 3), np.uint8), 8.0, {}, "width 17 and height 16 must be"),
        ("a.mp4", np.zeros((2, 16, 16, 3), np.uint8), 0, {}, "fps must be > 0, got 0"),
        ("a.gif", np.zeros((2, 16, 16, 3), np.uint8), -1.0, {}, "fps must be > 0"),
        ("a.gif", np.zeros((2, 16, 16, 3), np.uint8), 60.0, {}, "fps must be <= 50"),
        ("a.mp4", np.zeros((2, 16, 16, 3), np.uint8), float("inf"), {}, "fps must be finite"),
        ("a.mp4", np.zeros((2, 16, 16, 3), np.uint8), 8.0, {"crf": 52}, "crf must be in"),
        ("a.mp4", np.zeros((2, 16, 16, 3), np.uint8), 8.0, {"preset": "quick"}, "preset"),
        ("a.avi", np.zeros((2, 16, 16, 3), np.uint8), 8.0, {}, r"suffix '\.avi'.*'\.mp4'"),
    ],
)
def test_write_errors_name_the_field(
    tmp_path: Path, name: str, frames: np.ndarray, fps: float, kwargs: dict, message: str
):
    target = tmp_path / "sub" / name
    with pytest.raises(VideoWriteError, match=message):
        write_video(target, frames, fps, **kwargs)
    assert not target.parent.exists()  # rejected before touching the disk


def test_write_image_errors(tmp_path: Path):
    with pytest.raises(VideoWriteError, match=r"image: .*\(H, W, 3\)"):
        write_image(tmp_path / "x.png", np.zeros((1, 8, 8, 3), np.uint8))
    with pytest.raises(VideoWriteError, match="image suffix"):
        write_image(tmp_path / "x.tiff", np.zeros((8, 8, 3), np.uint8))


def _fail_after_first(monkeypatch: pytest.MonkeyPatch, name: str, error: BaseException) -> None:
    """Make ``tenku.io.video.<name>`` (a per-frame encoder step) raise on its second call."""
    original = getattr(video_module, name)
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise error
        return original(*args, **kwargs)

    monkeypatch.setattr(video_module, name, flaky)


@pytest.mark.parametrize(
    ("suffix", "step", "error"),
    [
        (".mp4", "_rgb_to_yuv", RuntimeError("encoder died")),
        (".gif", "_quantize", KeyboardInterrupt()),
    ],
)
@pytest.mark.parametrize("existing", [False, True])
def test_failed_write_leaves_no_partial_file(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    suffix: str,
    step: str,
    error: BaseException,
    existing: bool,
):
    target = tmp_path / f"clip{suffix}"
    if existing:
        target.write_bytes(b"previous good video")
    _fail_after_first(monkeypatch, step, error)
    with pytest.raises(type(error)):
        write_video(target, make_clip(num_frames=4), 8.0)
    assert [p.name for p in tmp_path.iterdir()] == ([target.name] if existing else [])
    if existing:
        assert target.read_bytes() == b"previous good video"
