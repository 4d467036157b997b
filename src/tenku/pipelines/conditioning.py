"""Given frames on the output timeline, and the windows a long video is generated in.

Every conditioned task is one mechanism (DESIGN.md): some frames of the output are given, the
rest are generated. Here the given pixels are placed on the timeline and turned, window by
window, into what the transformer takes: a canvas of frames to encode and a per-latent-frame
mask.

Policies, stated once:

- **Fit**: a source image or clip is scaled (bicubic) so that it covers the output size, then
  centre-cropped to it. Nothing is stretched; what sticks out on the long side is cut.
- **Rate**: a clip is resampled to the output frame rate by taking, for each output time, the
  nearest source frame.
- **Latent mask**: the causal VAE packs frame 0 into latent frame 0 and frames ``4j-3 .. 4j``
  into latent frame ``j``. A latent frame is given when any of its frames is given; its other
  frames are filled by holding the nearest given frame, so a lone keyframe in mid-clip holds
  still for at most three frames around it.
- **Exact pixels**: given frames are pasted into the output as they are, so a user's own footage
  comes back untouched (extend, connect, fill); only the frames between are generated. The
  decoder's error on the given frames is carried into the generated frames next to them,
  fading over a second, so that the seam shows no jump (:func:`paste`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from tenku.pipelines.request import GenerationRequest, Keyframe, is_image_path

SEAM_FADE = 8  # frames over which a seam's correction fades out (1 s at 8 fps)


def fit_frames(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale uint8 ``(T, h, w, 3)`` frames to cover ``width x height``, then centre-crop."""
    _, h, w, _ = frames.shape
    if (w, h) == (width, height):
        return frames
    scale = max(width / w, height / h)
    sw, sh = max(width, math.ceil(w * scale)), max(height, math.ceil(h * scale))
    left, top = (sw - width) // 2, (sh - height) // 2
    out = np.empty((len(frames), height, width, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        image = Image.fromarray(frame).resize((sw, sh), Image.Resampling.BICUBIC)
        out[i] = np.asarray(image)[top : top + height, left : left + width]
    return out


def resample_rate(frames: np.ndarray, source_fps: float, fps: float) -> np.ndarray:
    """The frames at ``fps``: for each output time ``i / fps``, the nearest source frame."""
    if source_fps == fps:
        return frames
    duration = (len(frames) - 1) / source_fps
    count = math.floor(duration * fps + 1e-6) + 1
    index = np.minimum(np.round(np.arange(count) * source_fps / fps).astype(int), len(frames) - 1)
    return frames[index]


def read_frames(path: str, fps: float) -> np.ndarray:
    """An image (one frame) or a whole video resampled to ``fps``, at its own size."""
    from tenku.io import read_image, read_video  # PyAV loads here, not on import

    if is_image_path(path):
        return read_image(path)[None]
    video = read_video(path)
    return resample_rate(video.frames, video.fps, fps)


@dataclass
class Given:
    """Frames ``(n, H, W, 3)`` uint8 whose first frame is output frame ``at``."""

    frames: np.ndarray
    at: int

    @property
    def end(self) -> int:
        return self.at + len(self.frames)


def place_keyframe(
    keyframe: Keyframe,
    frames: np.ndarray,
    *,
    width: int,
    height: int,
    fps: float,
    total: int,
    name: str,
) -> Given:
    """Cut a keyframe's span out of its source ``frames`` (from :func:`read_frames`), fit it
    and put it on a timeline of ``total`` frames.

    A keyframe at the request's last second lands on the last frame; a clip running past the
    end is cut there.
    """
    if not keyframe.is_image:
        first = round(keyframe.start * fps)
        last = len(frames) if keyframe.end is None else round(keyframe.end * fps) + 1
        if first >= len(frames):
            duration = (len(frames) - 1) / fps
            raise ValueError(f"{name}.start: {keyframe.start} is past the clip's {duration:g} s")
        frames = frames[first:last]
    at = min(round(keyframe.at * fps), total - 1)
    return Given(fit_frames(frames[: total - at], width, height), at)


def latent_groups(frames: int, temporal: int = 4) -> list[range]:
    """The output frames each latent frame covers: ``[0]``, ``[1..4]``, ``[5..8]``, ..."""
    return [range(0, 1)] + [
        range(1 + temporal * j, 1 + temporal * (j + 1)) for j in range((frames - 1) // temporal)
    ]


def plan_windows(total: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """``(start, end)`` output frames of each window; each is ``1 + 4k`` frames long.

    The first window starts at 0; each next one starts ``overlap`` frames before the last one
    ended, so its first ``overlap`` frames (``1 + 4m``) are the previous window's tail.
    """
    if (window - 1) % 4 or (overlap - 1) % 4 or not 1 <= overlap < window:
        raise ValueError(f"window: {window} and overlap {overlap} must be 1 + 4k, overlap smaller")
    spans, start = [], 0
    while True:
        end = min(start + window, total)
        spans.append((start, end))
        if end == total:
            return spans
        start = end - overlap


class Timeline:
    """The given frames of one output, looked up by frame index (later givens win)."""

    def __init__(self, given: list[Given] = ()) -> None:  # type: ignore[assignment]
        self.given = list(given)

    def add(self, given: Given) -> None:
        self.given.append(given)

    def window(self, start: int, end: int) -> tuple[np.ndarray | None, np.ndarray]:
        """The given frames in ``[start, end)`` as a canvas and a bool mask ``(end - start,)``.

        Unknown frames of the canvas hold the nearest known one (None when none is known).
        """
        length = end - start
        known = np.zeros(length, dtype=bool)
        canvas: np.ndarray | None = None
        for g in self.given:
            lo, hi = max(g.at, start), min(g.end, end)
            if lo >= hi:
                continue
            if canvas is None:
                canvas = np.zeros((length, *g.frames.shape[1:]), dtype=np.uint8)
            canvas[lo - start : hi - start] = g.frames[lo - g.at : hi - g.at]
            known[lo - start : hi - start] = True
        if canvas is not None:
            where = np.flatnonzero(known)
            nearest = where[np.abs(np.arange(length)[:, None] - where[None]).argmin(axis=1)]
            canvas = canvas[nearest]
        return canvas, known


def paste(
    frames: np.ndarray, canvas: np.ndarray | None, known: np.ndarray, fade: int = SEAM_FADE
) -> np.ndarray:
    """Decoded ``frames`` with every given frame put back (``canvas``, ``known`` as
    :meth:`Timeline.window` gives them for the same frames).

    Given frames are pasted exactly. The generated frames next to them take the difference
    between the given pixels and their decoded version, fading to nothing over ``fade`` frames
    on each side (and shared by weight between two near givens): the decoder's small colour
    and sharpness errors then carry no jump into the seam.
    """
    if canvas is None:
        return frames
    out = frames.astype(np.float32)
    residual = canvas.astype(np.float32) - out
    given = np.flatnonzero(known)
    for j in np.flatnonzero(~known):
        before, after = given[given < j], given[given > j]
        weights = []
        if len(before):
            weights.append((before[-1], max(0.0, 1 - (j - before[-1]) / fade)))
        if len(after):
            weights.append((after[0], max(0.0, 1 - (after[0] - j) / fade)))
        total = sum(w for _, w in weights)
        norm = max(total, 1.0)
        for k, w in weights:
            if w > 0:
                out[j] += residual[k] * (w / norm)
    out[known] = canvas[known]
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def latent_mask(known: np.ndarray, temporal: int = 4) -> np.ndarray:
    """Per latent frame: True when any of its frames is known. ``known`` is ``(1 + 4k,)``."""
    return np.array([known[list(g)].any() for g in latent_groups(len(known), temporal)])


def weight_curve(curve: tuple[float, ...], positions: np.ndarray) -> np.ndarray:
    """A weight curve (evenly spaced over ``[0, 1]``) read at ``positions`` in ``[0, 1]``."""
    if len(curve) == 1:
        return np.full(len(positions), curve[0], dtype=np.float32)
    grid = np.linspace(0.0, 1.0, len(curve))
    return np.interp(positions, grid, curve).astype(np.float32)


def fit_length(frames: np.ndarray, total: int) -> np.ndarray:
    """A source cut to ``total`` frames, or held on its last frame up to ``total``."""
    if len(frames) >= total:
        return frames[:total]
    return np.concatenate([frames, np.repeat(frames[-1:], total - len(frames), axis=0)])


def prompt_at(request: GenerationRequest, frame: int) -> str:
    """The prompt in force at output ``frame``: the last storyboard card started by then."""
    prompt = request.prompt
    for card in sorted(request.cards, key=lambda c: c.at):
        if round(card.at * request.fps) <= frame:
            prompt = card.prompt
    return prompt


@dataclass
class Plan:
    """What :meth:`TenkuPipeline.stream` works through for one request."""

    total: int  # output frames
    windows: list[tuple[int, int]]  # (start, end) output frames of each window
    timeline: Timeline  # the given frames (keyframes, card images), pasted back exactly
    sources: list[np.ndarray]  # remix: one, blend: none or two source videos (total, H, W, 3)
    bridge: int  # frames regenerated at the end to close a loop (0: no loop)


def make_plan(request: GenerationRequest, *, window_frames: int, overlap_frames: int) -> Plan:
    """Read and fit every source ``request`` names, and cut its timeline into windows."""
    total, size = request.frames, {"width": request.width, "height": request.height}
    read = functools.cache(lambda path: read_frames(path, request.fps))  # fill, recut: one read
    placed = [(f"keyframes[{i}]", k) for i, k in enumerate(request.keyframes)]
    placed += [
        (f"cards[{i}]", Keyframe(card.image, at=card.at))
        for i, card in enumerate(request.cards)
        if card.image is not None
    ]
    timeline = Timeline()
    for name, keyframe in placed:
        frames = read(keyframe.path)
        timeline.add(
            place_keyframe(keyframe, frames, **size, fps=request.fps, total=total, name=name)
        )
    sources: list[str] = []
    if request.remix is not None:
        sources = [request.remix.path]
    elif request.blend is not None:
        sources = list(request.blend.videos)
    videos = [fit_length(fit_frames(read(path), **size), total) for path in sources]
    bridge = request.loop_bridge if request.loop else 0  # checked long enough by the request
    windows = plan_windows(total, window_frames, overlap_frames)
    return Plan(total, windows, timeline, videos, bridge)
