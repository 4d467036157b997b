"""What a user asks for: one validated request object shared by the library, CLI and API.

Every field is checked with an error that names the field and its limit, before any work.
Sizes are in pixels (multiples of 16: the VAE's 8x times the transformer's 2x patches);
duration in seconds becomes ``1 + 4k`` frames (the VAE's causal 4x time compression), and
``seconds=0`` is a single frame (an image).

Every conditioned task is data on the same object (see ``tenku.pipelines.tasks``):

- ``keyframes``: images or spans of clips placed on the output timeline (image-to-video, last
  frame, keyframes at any time, extend forward or backward, connect, fill, re-cut);
- ``remix``: a source video to re-noise and denoise under the prompt (SDEdit, strength 0-1);
- ``blend``: a second prompt (and optionally two source videos) mixed along a weight curve;
- ``cards``: a storyboard, prompts (and optional images) placed at times;
- ``loop``: the last frame flows into the first.

Sources are file paths so that a request (and so its JSON sidecar) is plain data.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

# The keys of tenku.diffusion.SAMPLERS (a test keeps them equal), spelt out so that checking a
# request does not import torch.
SAMPLER_NAMES = ("dpmpp_2m", "euler", "heun")
ASPECTS = {"1:1": (1, 1), "16:9": (16, 9), "9:16": (9, 16)}
LIMITS = {
    "seconds": (0.0, 120.0),  # 0: one frame (an image); past one window: made in windows
    "fps": (1.0, 30.0),
    "width": (64, 1280),  # open-weight models' native sizes (832x480, 768x512, 720x480) fit
    "height": (64, 1280),
    "steps": (1, 200),
    "guidance": (0.0, 20.0),
    "variations": (1, 8),
    "prompt": (1, 1000),  # characters
    "strength": (0.0, 1.0),
    "keyframes": (0, 16),
    "cards": (0, 32),
}
MAX_SEED = 2**63 - 1
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def is_image_path(path: str | object) -> bool:
    """Whether a source path names a still image (by its suffix) rather than a video."""
    return str(path).lower().endswith(IMAGE_SUFFIXES)


def size_for(aspect: str, resolution: int) -> tuple[int, int]:
    """``(width, height)`` for an aspect ratio and the short side ``resolution``.

    The long side is rounded to the nearest multiple of 16: ``16:9`` at 128 is 224x128.
    """
    if aspect not in ASPECTS:
        raise ValueError(f"aspect: {aspect!r} is not one of {sorted(ASPECTS)}")
    if resolution % 16 or not LIMITS["height"][0] <= resolution <= LIMITS["height"][1]:
        raise ValueError(
            f"resolution: {resolution} must be a multiple of 16 in "
            f"[{LIMITS['height'][0]}, {LIMITS['height'][1]}]"
        )
    a, b = ASPECTS[aspect]
    long = max(16, round(resolution * max(a, b) / min(a, b) / 16) * 16)
    long = min(long, LIMITS["width"][1])
    return (long, resolution) if a >= b else (resolution, long)


def frames_for(seconds: float, fps: float, multiple: int = 4) -> int:
    """Frames of a clip of ``seconds`` at ``fps``: the nearest ``1 + multiple * k`` to
    ``seconds * fps + 1`` (the native VAE's rule is ``1 + 4k``; other models use 8).

    4 s at 8 fps is 33 frames (4.0 s of motion between the first and last frame); 0 s is one
    frame (an image).
    """
    if seconds == 0:
        return 1
    return 1 + multiple * max(1, round(seconds * fps / multiple))


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}: must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name}: must be a finite number, got {value}")
    if not low <= value <= high:
        raise ValueError(f"{name}: {value} is outside [{low}, {high}]")


def _check_path(name: str, path: object) -> None:
    if not isinstance(path, str) or not path.strip():
        raise ValueError(f"{name}: must be a file path")


@dataclass(frozen=True)
class Keyframe:
    """Given pixels on the output timeline: an image, or a span of a video clip.

    The frames are fitted to the request's size (scaled to cover it, then centre-cropped) and
    resampled to its frame rate (nearest frame in time).
    """

    path: str  # an image (.png, .jpg, ...) or a video (.mp4, .gif, ...)
    at: float = 0.0  # seconds from the output's start to where its first frame goes
    start: float = 0.0  # clips: seconds into the source where the span starts
    end: float | None = None  # clips: seconds into the source where it ends (None: its end)

    @property
    def is_image(self) -> bool:
        return is_image_path(self.path)

    def validate(self, name: str, seconds: float) -> None:
        _check_path(f"{name}.path", self.path)
        _check_range(f"{name}.at", self.at, 0.0, seconds)
        _check_range(f"{name}.start", self.start, 0.0, math.inf)
        if self.end is not None:
            _check_range(f"{name}.end", self.end, self.start, math.inf)


@dataclass(frozen=True)
class Remix:
    """Video-to-video: the source is noised to ``strength`` and denoised under the prompt.

    0 returns the source (through the VAE), 1 ignores it; 0.5 keeps layout and motion and lets
    the prompt change what it names (colour, shape, background).
    """

    path: str  # the source video (fitted to the request's size, rate and length)
    strength: float = 0.5

    def validate(self, name: str) -> None:
        _check_path(f"{name}.path", self.path)
        _check_range(f"{name}.strength", self.strength, *LIMITS["strength"])


@dataclass(frozen=True)
class Blend:
    """Mix the request's prompt (weight 1 - w) with ``prompt`` (weight w) along the clip.

    ``curve`` gives w at evenly spaced times from the first frame to the last (linearly
    interpolated between): ``(0, 1)`` turns one prompt into the other. With ``videos`` (two
    paths), their latents are mixed along the same curve and the result is denoised from
    ``strength``.
    """

    prompt: str
    curve: tuple[float, ...] = (0.0, 1.0)
    videos: tuple[str, ...] = ()  # none, or two source videos
    strength: float = 0.7

    def __post_init__(self) -> None:
        object.__setattr__(self, "curve", tuple(self.curve))
        object.__setattr__(self, "videos", tuple(self.videos))

    def validate(self, name: str) -> None:
        _check_prompt(f"{name}.prompt", self.prompt)
        if not 1 <= len(self.curve) <= 64:
            raise ValueError(f"{name}.curve: needs 1 to 64 weights, got {len(self.curve)}")
        for i, w in enumerate(self.curve):
            _check_range(f"{name}.curve[{i}]", w, 0.0, 1.0)
        if len(self.videos) not in (0, 2):
            raise ValueError(f"{name}.videos: give no video or two, got {len(self.videos)}")
        for i, v in enumerate(self.videos):
            _check_path(f"{name}.videos[{i}]", v)
        _check_range(f"{name}.strength", self.strength, *LIMITS["strength"])


@dataclass(frozen=True)
class Card:
    """One storyboard card: from ``at`` seconds on, the video follows ``prompt``."""

    at: float
    prompt: str
    image: str | None = None  # optional image placed as a keyframe at ``at``

    def validate(self, name: str, seconds: float) -> None:
        _check_range(f"{name}.at", self.at, 0.0, seconds)
        _check_prompt(f"{name}.prompt", self.prompt)
        if self.image is not None:
            _check_path(f"{name}.image", self.image)


def _check_prompt(name: str, prompt: object) -> None:
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"{name}: must be a non-empty string")
    if len(prompt) > LIMITS["prompt"][1]:
        raise ValueError(f"{name}: at most {LIMITS['prompt'][1]} characters")


def _as_items(value: Any, kind: type) -> tuple:
    """A tuple of ``kind`` from a sequence of ``kind`` or of dicts (as read back from JSON)."""
    return tuple(kind(**v) if isinstance(v, dict) else v for v in value)


@dataclass(frozen=True)
class GenerationRequest:
    """Text to video. ``None`` fields take the model's defaults (see :meth:`resolved`)."""

    prompt: str
    seconds: float = 4.0
    width: int = 128
    height: int = 128
    fps: float = 8.0
    seed: int | None = None  # None: a random seed, recorded in the result
    steps: int | None = None  # sampler steps (None: the model's default)
    guidance: float | None = None  # classifier-free guidance scale (None: the model's)
    sampler: str | None = None  # one of SAMPLER_NAMES (None: the model's)
    variations: int = 1  # videos from seeds seed, seed + 1, ...
    keyframes: tuple[Keyframe, ...] = ()  # given images / clip spans on the timeline
    remix: Remix | None = None  # video-to-video source and strength
    blend: Blend | None = None  # a second prompt (and videos) mixed along a curve
    cards: tuple[Card, ...] = ()  # storyboard: prompts placed at times
    loop: bool = False  # the last frame flows into the first

    def __post_init__(self) -> None:
        object.__setattr__(self, "keyframes", _as_items(self.keyframes, Keyframe))
        object.__setattr__(self, "cards", _as_items(self.cards, Card))
        for name, kind in (("remix", Remix), ("blend", Blend)):
            if isinstance(getattr(self, name), dict):
                object.__setattr__(self, name, kind(**getattr(self, name)))
        self.validate()

    def validate(self) -> None:
        """Raise a ValueError naming the first field outside its limits."""
        _check_prompt("prompt", self.prompt)
        for name in ("seconds", "fps", "width", "height", "steps", "guidance", "variations"):
            value = getattr(self, name)
            if value is not None:
                _check_range(name, value, *LIMITS[name])
        for name in ("width", "height"):
            if getattr(self, name) % 16:
                raise ValueError(f"{name}: {getattr(self, name)} must be a multiple of 16")
        if self.sampler is not None and self.sampler not in SAMPLER_NAMES:
            raise ValueError(f"sampler: {self.sampler!r} is not one of {sorted(SAMPLER_NAMES)}")
        if self.seed is not None and not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed: {self.seed} is outside [0, 2**63 - 1]")
        for name in ("keyframes", "cards"):
            if len(getattr(self, name)) > LIMITS[name][1]:
                raise ValueError(
                    f"{name}: at most {LIMITS[name][1]}, got {len(getattr(self, name))}"
                )
        for i, keyframe in enumerate(self.keyframes):
            keyframe.validate(f"keyframes[{i}]", self.seconds)
        for i, card in enumerate(self.cards):
            card.validate(f"cards[{i}]", self.seconds)
        if self.remix is not None:
            self.remix.validate("remix")
        if self.blend is not None:
            self.blend.validate("blend")
        tasks = [n for n in ("remix", "blend") if getattr(self, n) is not None]
        if self.cards:
            tasks.append("cards")
        if len(tasks) > 1:
            raise ValueError(f"{tasks[1]}: cannot be combined with {tasks[0]} in one request")
        if self.frames == 1 and (self.loop or self.cards or self.blend):
            raise ValueError("seconds: 0 (an image) cannot loop, blend or have cards")
        if self.loop and self.frames < self.loop_bridge + 9:
            raise ValueError(
                f"seconds: a loop needs at least {(self.loop_bridge + 8) / self.fps:g} s "
                f"({self.loop_bridge + 9} frames), got {self.seconds:g}"
            )

    @property
    def loop_bridge(self) -> int:
        """Frames a loop regenerates at its end: about one second, in whole latent frames."""
        return 4 * max(1, round(self.fps / 4))

    @property
    def frames(self) -> int:
        return frames_for(self.seconds, self.fps)

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    def resolved(self, defaults: dict[str, Any], seed: int) -> GenerationRequest:
        """This request with every ``None`` filled from ``defaults`` and the seed fixed."""
        fill = {
            k: defaults[k] for k in ("steps", "guidance", "sampler") if getattr(self, k) is None
        }
        return replace(self, seed=seed if self.seed is None else self.seed, **fill)

    def prompts(self) -> list[tuple[str, str]]:
        """Every text the request conditions on, as ``(field, text)``: for moderation."""
        texts = [("prompt", self.prompt)]
        if self.blend is not None:
            texts.append(("blend.prompt", self.blend.prompt))
        texts += [(f"cards[{i}].prompt", card.prompt) for i, card in enumerate(self.cards)]
        return texts

    @property
    def task(self) -> str:
        """What the request asks for, by name (for logs, errors and backend capabilities)."""
        if self.remix is not None:
            return "video-to-video"
        if self.blend is not None:
            return "blend"
        if self.cards:
            return "storyboard"
        if self.loop:
            return "loop"
        if self.keyframes and all(k.is_image for k in self.keyframes):
            times = sorted(k.at for k in self.keyframes)
            if times == [0.0]:
                return "image-to-video"
            if times == [0.0, self.seconds]:
                return "first-last-frame"
        if self.keyframes:
            return "keyframes"
        return "text-to-image" if self.frames == 1 else "text-to-video"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
