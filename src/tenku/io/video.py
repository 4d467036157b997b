"""Reading and writing videos, image sequences and images.

Every video array in tenku is ``uint8`` RGB of shape ``(T, H, W, 3)``; an image is ``(H, W, 3)``.
MP4/MOV files are H.264 (libx264) in yuv420p, tagged BT.709 limited range so that browsers and
players decode the colours the way they were encoded, and encoded without B-frames
(``X264_PARAMS``). With B-frames and macroblock-tree rate control together, libx264 core 165
(PyAV's wheels) encodes the same frames to different bytes on some runs, even on one thread
(measured: 22 of 150 encodes of a 64x64 tiny-model clip differed, by up to 31 levels once
decoded), so a video made again from its sidecar was not the same video. Without B-frames,
every encode of each clip tried was identical (500 at 64x64, 100 at 96x96, 150 at 112x112, 80
at 128x224, 40 at 256x256), for 0-14% more bytes at the same PSNR (+-0.2 dB); turning off the
macroblock tree instead also worked but cost 10-40% more bytes and more error on still scenes.

Every writer is atomic: it encodes into a hidden temporary file next to the target and renames it
into place only after a clean close, so a failed job never leaves a partial file that looks like
a video.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace
from PIL import Image

from tenku.io.files import atomic_path

WRITE_SUFFIXES = (".mp4", ".mov", ".gif", ".png")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
X264_PARAMS = "bframes=0"  # the same frames -> the same bytes (see the module docstring)
X264_PRESETS = (
    *("ultrafast", "superfast", "veryfast", "faster", "fast"),
    *("medium", "slow", "slower", "veryslow", "placebo"),
)
MIN_FPS = 0.01
MAX_GIF_FPS = 50.0  # GIF delays are whole 1/100 s; browsers slow down anything shorter than 2/100
# FFmpeg decodes text files (.txt, .nfo, ...) as "ANSI art" video; they are not videos to us.
_TEXT_ART_CODECS = frozenset({"ansi", "bintext", "xbin", "idf"})
# AVColorSpace / AVColorPrimaries / AVColorTransferCharacteristic codes (libavutil/pixfmt.h).
_AVCOL_BT709, _AVCOL_UNSPECIFIED = 1, 2
_COLORSPACE_NAMES = {1: "bt709", 2: "unspecified", 5: "bt470bg", 6: "smpte170m", 9: "bt2020nc"}
_RANGE_NAMES = {0: "unspecified", 1: "tv", 2: "pc"}


class VideoReadError(ValueError):
    """A path is missing, empty, unreadable or not a video/image; the message names the path."""


class VideoWriteError(ValueError):
    """Bad input to a writer; the message names the argument and the limit it breaks."""


@dataclass(frozen=True)
class Video:
    """A decoded clip: ``frames`` is uint8 RGB ``(T, H, W, 3)``, ``fps`` frames per second."""

    frames: np.ndarray
    fps: float

    @property
    def num_frames(self) -> int:
        """Number of frames ``T``."""
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        """Frame height ``H`` in pixels."""
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        """Frame width ``W`` in pixels."""
        return int(self.frames.shape[2])

    @property
    def seconds(self) -> float:
        """Duration ``T / fps`` in seconds."""
        return self.num_frames / self.fps


def write_video(
    path: str | os.PathLike[str],
    frames: np.ndarray,
    fps: float,
    *,
    crf: int = 18,
    preset: str = "medium",
) -> Path:
    """Atomically write uint8 RGB ``frames`` of shape ``(T, H, W, 3)`` to ``path``.

    The suffix picks the format: ``.mp4``/``.mov`` is H.264 yuv420p BT.709 limited range (``H``
    and ``W`` must be even; ``crf`` 0-51 and ``preset`` are libx264's), ``.gif`` is an endlessly
    looping GIF with one adaptive palette per frame and no dithering (Pillow merges identical
    consecutive frames into one longer frame), ``.png`` takes a single frame (``T == 1``).
    Parent directories are created. Returns the path written.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in WRITE_SUFFIXES:
        raise VideoWriteError(
            f"path: unsupported suffix {path.suffix!r} for {path}; supported: {WRITE_SUFFIXES}"
        )
    frames = _check_array("frames", frames, ndim=4)
    if not fps > 0:
        raise VideoWriteError(f"fps must be > 0, got {fps}")
    if not MIN_FPS <= fps < math.inf:
        raise VideoWriteError(f"fps must be finite and >= {MIN_FPS}, got {fps}")
    rate = Fraction(float(fps)).limit_denominator(1001)  # 1001 keeps NTSC rates (30000/1001) exact
    if suffix == ".png":
        if len(frames) != 1:
            raise VideoWriteError(
                f"frames: a .png holds one frame, got T={len(frames)}; "
                "use write_frames(directory, frames) for an image sequence"
            )
        return write_image(path, frames[0])
    if suffix == ".gif":
        if fps > MAX_GIF_FPS:
            raise VideoWriteError(f"fps must be <= {MAX_GIF_FPS:g} for .gif, got {fps}")
        with atomic_path(path) as tmp:
            _write_gif(tmp, frames, float(rate))
        return path
    height, width = frames.shape[1:3]
    if width % 2 or height % 2:
        raise VideoWriteError(f"width {width} and height {height} must be even for yuv420p H.264")
    if not 0 <= crf <= 51:
        raise VideoWriteError(f"crf must be in [0, 51], got {crf}")
    if preset not in X264_PRESETS:
        raise VideoWriteError(f"preset must be one of {X264_PRESETS}, got {preset!r}")
    with atomic_path(path) as tmp:
        _write_h264(tmp, frames, rate, crf, preset)
    return path


def write_frames(
    directory: str | os.PathLike[str],
    frames: np.ndarray,
    *,
    pattern: str = "frame_{:05d}.png",
) -> list[Path]:
    """Write uint8 RGB ``frames`` ``(T, H, W, 3)`` as one PNG per frame, named ``pattern``.

    Each file is written atomically. Existing files that do not match a written name are left
    alone, so write into an empty directory if it will be read back with :func:`read_video`.
    """
    frames = _check_array("frames", frames, ndim=4)
    directory = Path(directory)
    return [write_image(directory / pattern.format(i), frame) for i, frame in enumerate(frames)]


def write_image(path: str | os.PathLike[str], image: np.ndarray) -> Path:
    """Atomically write a uint8 RGB ``image`` ``(H, W, 3)``; the suffix picks the format."""
    path = Path(path)
    image = _check_array("image", image, ndim=3)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise VideoWriteError(
            f"path: unsupported image suffix {path.suffix!r} for {path}; "
            f"supported: {IMAGE_SUFFIXES}"
        )
    with atomic_path(path) as tmp:
        Image.fromarray(image, mode="RGB").save(tmp)
    return path


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as uint8 RGB ``(H, W, 3)`` (alpha dropped, grey/palette expanded)."""
    path = Path(path)
    with _read_errors(path, "not an image file"), Image.open(path) as image:
        return np.array(image.convert("RGB"), dtype=np.uint8)


def read_video(path: str | os.PathLike[str], *, fps: float = 8.0) -> Video:
    """Decode a video into uint8 RGB frames ``(T, H, W, 3)`` and its frame rate.

    ``path`` is anything FFmpeg opens (.mp4, .mov, .webm, .mkv, .avi, .gif, ...), a directory of
    PNG frames (sorted by name, hidden files skipped) or a single .png/.jpg image. ``fps`` is used
    only for the last two, which carry no frame rate. YUV is converted with the stream's colour
    tags; untagged streams are taken as limited range, BT.601 for SD and BT.709 for HD.
    """
    path = Path(path)
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
        if not fps > 0:
            raise VideoReadError(f"fps must be > 0, got {fps} (reading {path})")
        files = [path]
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if _is_png_frame(p))
            if not files:
                raise VideoReadError(f"no PNG frames in directory: {path}")
        images = [read_image(file) for file in files]
        sizes = {image.shape for image in images}
        if len(sizes) > 1:
            raise VideoReadError(f"PNG frames differ in size in {path}: {sorted(sizes)}")
        return Video(np.stack(images), float(fps))
    with _read_errors(path, "not a video file"), av.open(str(path)) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        decoded = [_to_rgb(frame) for frame in container.decode(stream)]
        rate = _frame_rate(stream)
    if not decoded:
        raise VideoReadError(f"not a video file: {path} (no frames decoded)")
    if not rate:
        raise VideoReadError(f"not a video file: {path} (no frame rate)")
    if len({frame.shape for frame in decoded}) > 1:
        raise VideoReadError(f"unsupported video: {path} (frame size changes mid-stream)")
    return Video(np.stack(decoded), float(rate))


def probe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Describe the first video stream of ``path`` without decoding it.

    Returns ``codec``, ``pix_fmt``, ``width``, ``height``, ``fps``, ``num_frames`` (packets
    counted), ``duration`` (seconds), ``colorspace``, ``color_range``, ``color_primaries`` and
    ``color_trc`` (the last two as FFmpeg's integer codes, 1 meaning BT.709).
    """
    path = Path(path)
    with _read_errors(path, "not a video file"), av.open(str(path)) as container:
        stream = _video_stream(container, path)
        ctx = stream.codec_context
        num_frames = sum(1 for packet in container.demux(stream) if packet.size)
        rate = _frame_rate(stream)
        fps = float(rate) if rate else 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        else:
            duration = num_frames / fps if fps else 0.0
        return {
            "codec": ctx.name,
            "pix_fmt": ctx.pix_fmt,
            "width": ctx.width,
            "height": ctx.height,
            "fps": fps,
            "num_frames": num_frames,
            "duration": duration,
            "colorspace": _COLORSPACE_NAMES.get(ctx.colorspace, str(ctx.colorspace)),
            "color_range": _RANGE_NAMES.get(ctx.color_range, str(ctx.color_range)),
            "color_primaries": int(ctx.color_primaries),
            "color_trc": int(ctx.color_trc),
        }


def _check_array(name: str, array: Any, *, ndim: int) -> np.ndarray:
    """Return ``array`` as uint8 ``(T, H, W, 3)`` (ndim 4) or ``(H, W, 3)`` (ndim 3), or raise."""
    array = np.asarray(array)
    shape = "(T, H, W, 3)" if ndim == 4 else "(H, W, 3)"
    if array.dtype != np.uint8 or array.ndim != ndim or array.shape[-1] != 3:
        raise VideoWriteError(
            f"{name}: expected uint8 array of shape {shape}, got {array.dtype} {array.shape}"
        )
    if 0 in array.shape:
        raise VideoWriteError(f"{name}: expected a non-empty array, got shape {array.shape}")
    return array


def _rgb_to_yuv(rgb: np.ndarray) -> av.VideoFrame:
    """One ``(H, W, 3)`` RGB frame as a yuv420p frame in BT.709 limited range."""
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    return frame.reformat(
        format="yuv420p", dst_colorspace=Colorspace.ITU709, dst_color_range=ColorRange.MPEG
    )


def _write_h264(path: Path, frames: np.ndarray, rate: Fraction, crf: int, preset: str) -> None:
    options = {"movflags": "+faststart"}
    with av.open(str(path), "w", container_options=options) as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": preset, "x264-params": X264_PARAMS}
        ctx = stream.codec_context
        ctx.time_base = 1 / rate
        ctx.colorspace = ctx.color_primaries = ctx.color_trc = _AVCOL_BT709
        ctx.color_range = ColorRange.MPEG
        for index, rgb in enumerate(frames):
            frame = _rgb_to_yuv(rgb)
            frame.pts, frame.time_base = index, ctx.time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def _quantize(rgb: np.ndarray) -> Image.Image:
    """One ``(H, W, 3)`` RGB frame as a palette image: adaptive 256 colours, no dithering."""
    image = Image.fromarray(np.ascontiguousarray(rgb), mode="RGB")
    return image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)


def _write_gif(path: Path, frames: np.ndarray, fps: float) -> None:
    # Delays are whole centiseconds: round the timestamps, not each delay, so the average rate
    # stays exact (8 fps alternates 120 ms and 130 ms instead of drifting at 120 ms).
    ticks = np.round(np.arange(len(frames) + 1) * 100.0 / fps).astype(np.int64)
    durations = [int(d) * 10 for d in np.diff(ticks)]
    images = [_quantize(rgb) for rgb in frames]
    images[0].save(
        path, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0
    )


def _video_stream(container: Any, path: Path) -> Any:
    if not container.streams.video:
        raise VideoReadError(f"not a video file: {path} (no video stream found)")
    stream = container.streams.video[0]
    if stream.codec_context.name in _TEXT_ART_CODECS:
        raise VideoReadError(f"not a video file: {path} (text, which FFmpeg reads as ANSI art)")
    return stream


def _frame_rate(stream: Any) -> Fraction | None:
    # FFmpeg's av_guess_frame_rate; average_rate alone is misled by GIF's first-frame delay.
    return stream.guessed_rate or stream.average_rate


def _to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """Decoded frame -> uint8 ``(H, W, 3)`` RGB, converting YUV with the frame's colour tags."""
    pix_fmt = frame.format.name
    if frame.format.is_rgb or frame.format.has_palette:
        return frame.to_ndarray(format="rgb24")
    colorspace = frame.colorspace
    if colorspace == _AVCOL_UNSPECIFIED:
        hd = frame.width >= 1280 or frame.height >= 720
        colorspace = Colorspace.ITU709 if hd else Colorspace.ITU601
    color_range = frame.color_range
    if color_range == ColorRange.UNSPECIFIED:
        color_range = ColorRange.JPEG if pix_fmt.startswith("yuvj") else ColorRange.MPEG
    return frame.to_ndarray(format="rgb24", src_colorspace=colorspace, src_color_range=color_range)


def _is_png_frame(path: Path) -> bool:
    return path.suffix.lower() == ".png" and not path.name.startswith(".") and path.is_file()


@contextmanager
def _read_errors(path: Path, what: str) -> Iterator[None]:
    """Turn FFmpeg/Pillow/OS failures while reading ``path`` into :class:`VideoReadError`."""
    try:
        if path.is_file() and path.stat().st_size == 0:
            raise VideoReadError(f"{what}: {path} (empty file)")
        yield
    except VideoReadError:
        raise
    except FileNotFoundError as error:
        raise VideoReadError(f"no such file: {path}") from error
    except (av.FFmpegError, OSError) as error:
        reason = getattr(error, "strerror", None) or error
        raise VideoReadError(f"{what}: {path} ({reason})") from error
