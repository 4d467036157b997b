"""Every Sora task as a request: builders that turn "extend this clip by 2 s" into data.

Each function returns a :class:`GenerationRequest`; nothing here runs a model. The request's
conditioning fields carry the task (see :mod:`tenku.pipelines.conditioning` for the policies
that place the given frames), so the library, the CLI and the API share one mechanism:

==================  ===================================================================
task                request
==================  ===================================================================
image-to-video      ``keyframes``: the image at 0 s (and optionally another at the end)
keyframes           ``keyframes``: images at any times
extend              ``keyframes``: the clip at 0 s, and ``seconds`` longer (or the clip
                    at the end, for backward)
connect             ``keyframes``: clip A at 0 s, clip B after a generated gap
fill                ``keyframes``: the clip before and after the missing span
re-cut              ``keyframes``: segments in the new order with generated seams
loop                ``loop``: the last second is regenerated to flow into the first frame
remix               ``remix``: SDEdit of the source at a strength
interpolate         ``remix`` at a multiple of the source's frame rate, low strength
blend               ``blend``: a second prompt (and two videos) along a weight curve
storyboard          ``cards``: prompts (and images) at times; long videos in windows
image               ``seconds=0``: one frame
==================  ===================================================================

``options`` are any other :class:`GenerationRequest` fields (seed, steps, size, ...). Where a
source video is given and no size is, the output takes the source's size (rounded to multiples
of 16 within the limits).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from tenku.pipelines.request import (
    LIMITS,
    Blend,
    Card,
    GenerationRequest,
    Keyframe,
    Remix,
    is_image_path,
)


def source_info(path: str | Path) -> dict[str, float]:
    """``width``, ``height``, ``fps`` and ``seconds`` (first to last frame) of an image or video.

    Raises a ValueError naming the path when it is missing or not a video or image.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"source: {path} does not exist")
    if is_image_path(path):
        try:
            with Image.open(path) as image:
                width, height = image.size
        except OSError:
            raise ValueError(f"source: {path} is not an image file") from None
        return {"width": width, "height": height, "fps": 0.0, "seconds": 0.0}
    from tenku.io import probe  # PyAV loads here, not when the CLI builds its parser

    info = probe(path)
    frames, fps = info["num_frames"], info["fps"]
    if frames < 1 or fps <= 0:
        raise ValueError(f"source: {path} has no frames")
    return {
        "width": info["width"],
        "height": info["height"],
        "fps": fps,
        "seconds": (frames - 1) / fps,
    }


def _snap(size: float, name: str) -> int:
    low, high = LIMITS[name]
    return int(min(max(round(size / 16) * 16, low), high))


def _with_source_size(path: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with the source's size when they give none."""
    if "width" in options or "height" in options:
        return options
    info = source_info(path)
    return {
        **options,
        "width": _snap(info["width"], "width"),
        "height": _snap(info["height"], "height"),
    }


def _frame_seconds(seconds: float, options: dict[str, Any]) -> float:
    """``seconds`` rounded down to whole frames at the request's rate (so spans line up)."""
    fps = float(options.get("fps", 8.0))
    return int(seconds * fps + 1e-6) / fps


def image_to_video(
    prompt: str, image: str, *, last_image: str | None = None, **options: Any
) -> GenerationRequest:
    """The image becomes the first frame (``last_image``, if given, the last)."""
    seconds = options.get("seconds", 4.0)
    frames = [Keyframe(image, at=0.0)]
    if last_image is not None:
        frames.append(Keyframe(last_image, at=seconds))
    return GenerationRequest(prompt, keyframes=tuple(frames), **options)


def keyframes(prompt: str, items: Sequence[tuple[str, float]], **options: Any) -> GenerationRequest:
    """Images (or clips) at the given times, in seconds."""
    return GenerationRequest(
        prompt, keyframes=tuple(Keyframe(path, at=at) for path, at in items), **options
    )


def extend(
    prompt: str, video: str, seconds: float, *, backward: bool = False, **options: Any
) -> GenerationRequest:
    """The clip, then ``seconds`` more that follow its motion (or ``seconds`` before it)."""
    if not 0 < seconds <= LIMITS["seconds"][1]:
        raise ValueError(f"seconds: {seconds} is outside (0, {LIMITS['seconds'][1]}]")
    options = _with_source_size(video, options)
    length = _frame_seconds(source_info(video)["seconds"], options)
    at = _frame_seconds(seconds, options) if backward else 0.0
    return GenerationRequest(
        prompt, seconds=length + seconds, keyframes=(Keyframe(video, at=at),), **options
    )


def connect(
    prompt: str, first: str, second: str, *, gap: float = 1.0, **options: Any
) -> GenerationRequest:
    """Clip ``first``, a generated transition of ``gap`` seconds, then clip ``second``."""
    if not 0 < gap <= 8:
        raise ValueError(f"gap: {gap} is outside (0, 8]")
    options = _with_source_size(first, options)
    a = _frame_seconds(source_info(first)["seconds"], options)
    b = _frame_seconds(source_info(second)["seconds"], options)
    at = a + _frame_seconds(gap, options)
    return GenerationRequest(
        prompt,
        seconds=at + b,
        keyframes=(Keyframe(first, at=0.0), Keyframe(second, at=at)),
        **options,
    )


def fill(prompt: str, video: str, start: float, end: float, **options: Any) -> GenerationRequest:
    """Regenerate the span ``[start, end)`` seconds of the clip; keep the rest as it is."""
    options = _with_source_size(video, options)
    length = _frame_seconds(source_info(video)["seconds"], options)
    if not 0 < start < end < length:
        raise ValueError(
            f"start, end: need 0 < start < end < {length:g} (the clip), got {start}, {end}"
        )
    step = 1 / float(options.get("fps", 8.0))
    return GenerationRequest(
        prompt,
        seconds=length,
        keyframes=(
            Keyframe(video, at=0.0, start=0.0, end=start - step),
            Keyframe(video, at=end, start=end),
        ),
        **options,
    )


def recut(
    prompt: str,
    video: str,
    segments: Sequence[tuple[float, float]],
    *,
    seam: float = 0.5,
    **options: Any,
) -> GenerationRequest:
    """The clip's ``(start, end)`` segments in the given order, with ``seam`` seconds generated
    between each two so that the cuts flow."""
    if not segments:
        raise ValueError("segments: give at least one (start, end) span")
    if not 0 < seam <= 4:
        raise ValueError(f"seam: {seam} is outside (0, 4]")
    options = _with_source_size(video, options)
    length = source_info(video)["seconds"]
    items, at = [], 0.0
    for i, (start, end) in enumerate(segments):
        if not 0 <= start < end <= length + 1e-6:
            raise ValueError(
                f"segments[{i}]: ({start}, {end}) is not a span of the {length:g} s clip"
            )
        items.append(Keyframe(video, at=at, start=start, end=end))
        at += _frame_seconds(end - start, options) + _frame_seconds(seam, options)
    seconds = at - _frame_seconds(seam, options)
    return GenerationRequest(prompt, seconds=seconds, keyframes=tuple(items), **options)


def loop(prompt: str, video: str | None = None, **options: Any) -> GenerationRequest:
    """A clip whose last frame flows into its first: made from the prompt, or from ``video``
    (whose last second is regenerated)."""
    if video is None:
        return GenerationRequest(prompt, loop=True, **options)
    options = _with_source_size(video, options)
    length = _frame_seconds(source_info(video)["seconds"], options)
    return GenerationRequest(
        prompt, seconds=length, loop=True, keyframes=(Keyframe(video),), **options
    )


def remix(prompt: str, video: str, *, strength: float = 0.5, **options: Any) -> GenerationRequest:
    """The clip re-imagined under ``prompt``: 0 keeps it, 1 ignores it (SDEdit)."""
    options = _with_source_size(video, options)
    options.setdefault("seconds", _frame_seconds(source_info(video)["seconds"], options))
    return GenerationRequest(prompt, remix=Remix(video, strength), **options)


def interpolate(
    prompt: str, video: str, *, factor: int = 2, strength: float = 0.4, **options: Any
) -> GenerationRequest:
    """The clip at ``factor`` times its frame rate: frames repeated to the new rate, then
    denoised at a low ``strength`` so that the model draws the motion between them."""
    if not 2 <= factor <= 8:
        raise ValueError(f"factor: {factor} is outside [2, 8]")
    info = source_info(video)
    options = _with_source_size(video, {**options, "fps": info["fps"] * factor})
    return GenerationRequest(
        prompt, seconds=info["seconds"], remix=Remix(video, strength), **options
    )


def blend(
    prompt: str,
    other: str,
    *,
    videos: Sequence[str] = (),
    curve: Sequence[float] = (0.0, 1.0),
    strength: float = 0.7,
    **options: Any,
) -> GenerationRequest:
    """``prompt`` turning into ``other`` along ``curve`` (and, with two videos, their mix)."""
    if videos:
        options = _with_source_size(videos[0], options)
    return GenerationRequest(
        prompt,
        blend=Blend(other, curve=tuple(curve), videos=tuple(videos), strength=strength),
        **options,
    )


def storyboard(cards: Sequence[Card | tuple], **options: Any) -> GenerationRequest:
    """One video through the cards ``(at, prompt[, image])``; ``seconds`` defaults to the last
    card's time plus 4 s."""
    items = tuple(c if isinstance(c, Card) else Card(*c) for c in cards)
    if not items:
        raise ValueError("cards: give at least one card")
    items = tuple(sorted(items, key=lambda c: c.at))
    options.setdefault("seconds", items[-1].at + 4.0)
    return GenerationRequest(items[0].prompt, cards=items, **options)


def image(prompt: str, **options: Any) -> GenerationRequest:
    """One frame: a still image (saved as PNG)."""
    return GenerationRequest(prompt, seconds=0.0, **options)


TASKS = {
    "image-to-video": image_to_video,
    "keyframes": keyframes,
    "extend": extend,
    "connect": connect,
    "fill": fill,
    "recut": recut,
    "loop": loop,
    "remix": remix,
    "interpolate": interpolate,
    "blend": blend,
    "storyboard": storyboard,
    "image": image,
}
