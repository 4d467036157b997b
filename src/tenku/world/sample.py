"""Random scenes for training and evaluation, with weights you choose.

Every sampled scene obeys WORLD.md and, unless asked otherwise, contains none of the
held-out combinations of ``holdout.json``. Objects stay inside the canvas for the whole
clip, never overlap one another, and are at least half visible at the first and the last
frame (an object may pass behind the pillar in between, which is the point of the pillar).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from tenku.world.motion import Track, native_times, object_track, passes_behind_pillar, pillar_span
from tenku.world.rules import (
    BACKGROUNDS,
    COLOURS,
    HOLDOUT,
    MOTION_SPAN_FRAMES,
    MOTIONS,
    NATIVE_FPS,
    SCALE_RANGE,
    SHAPES,
    SIZES,
    SPEED_RANGE,
    TRANSLATIONS,
)
from tenku.world.spec import MAX_COUNT, MAX_OBJECTS, ObjectSpec, SceneSpec

_TRIES = 64  # draws tried per object before the scene is drawn again


def _uniform(keys: tuple[str, ...] | list[str]) -> dict[str, float]:
    return dict.fromkeys(keys, 1.0)


@dataclass(frozen=True)
class SamplerConfig:
    """How often each kind of scene is drawn. Weights need not sum to one."""

    width: int = 64  # canvas width in pixels (multiple of 16)
    height: int = 64  # canvas height in pixels (multiple of 16)
    frames: int = 17  # frames per clip
    fps: float = NATIVE_FPS  # frames per second
    backgrounds: Mapping[str, float] = field(default_factory=lambda: _uniform(list(BACKGROUNDS)))
    motions: Mapping[str, float] = field(default_factory=lambda: _uniform(list(MOTIONS)))
    shapes: Mapping[str, float] = field(default_factory=lambda: _uniform(list(SHAPES)))
    colours: Mapping[str, float] = field(default_factory=lambda: _uniform(list(COLOURS)))
    object_counts: Mapping[int, float] = field(default_factory=lambda: {1: 4.0, 2: 3.5, 3: 2.5})
    counting_prob: float = 0.15  # chance of a counting scene ("three green balls")
    count_range: tuple[int, int] = (2, 5)  # objects in a counting scene, inclusive
    pillar_prob: float = 0.25  # chance of a pillar (never in counting scenes)
    cross_prob: float = 0.8  # in pillar scenes: chance the first object passes behind it
    large_prob: float = 0.5  # chance an object is large rather than small
    night_stars: tuple[int, int] = (0, 12)  # star count range on night backgrounds, inclusive
    gap: float = 0.05  # minimum distance between object boxes, canvas fraction
    clearance: float = 0.04  # a pillar crosser starts and ends this far clear of the pillar
    exclude_holdout: bool = True  # never draw a combination listed in holdout.json

    def __post_init__(self) -> None:
        lo, hi = self.count_range
        if not 1 <= lo <= hi <= MAX_COUNT:
            raise ValueError(f"count_range: {self.count_range} must lie within 1..{MAX_COUNT}")
        if not set(self.object_counts) <= set(range(1, MAX_OBJECTS + 1)):
            raise ValueError(f"object_counts: keys must lie within 1..{MAX_OBJECTS}")
        SceneSpec(  # validates width, height, frames and fps once, with SceneSpec's messages
            objects=(ObjectSpec("red", "circle", "small", 0.5, 0.4),),
            width=self.width,
            height=self.height,
            frames=self.frames,
            fps=self.fps,
        )


def _pick(rng: np.random.Generator, weights: Mapping, exclude: set | None = None):
    keys = [k for k, w in weights.items() if w > 0 and (not exclude or k not in exclude)]
    if not keys:
        raise ValueError("nothing left to sample: every option has zero weight or is excluded")
    p = np.asarray([weights[k] for k in keys], dtype=np.float64)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _visible_fraction(box: np.ndarray) -> np.ndarray:
    """(T,) fraction of each box's width not hidden by the pillar."""
    left, right = pillar_span()
    hidden = np.clip(np.minimum(box[:, 2], right) - np.maximum(box[:, 0], left), 0, None)
    return 1.0 - hidden / (box[:, 2] - box[:, 0])


def _apart(a: np.ndarray, b: np.ndarray, gap: float) -> bool:
    """True when boxes a and b (T, 4) are separated by ``gap`` at every frame."""
    sep_x = np.maximum(a[:, 0] - b[:, 2], b[:, 0] - a[:, 2])
    sep_y = np.maximum(a[:, 1] - b[:, 3], b[:, 1] - a[:, 3])
    return bool((np.maximum(sep_x, sep_y) >= gap).all())


def _crossing_x(obj: ObjectSpec, cfg: SamplerConfig) -> tuple[float, float]:
    """The start-x interval from which a left/right mover passes wholly behind the pillar,
    starting and ending at least ``cfg.clearance`` clear of it."""
    half_w = obj.height / 2 / (cfg.width / cfg.height)
    clear = half_w + cfg.clearance
    travel = obj.speed * native_times(cfg.frames, cfg.fps)[-1] / MOTION_SPAN_FRAMES
    left, right = pillar_span()
    lo = max(right + clear - travel, half_w)  # for a mover to the right; mirrored for left
    hi = min(left - clear, 1 - half_w - travel)
    return (lo, hi) if obj.motion == "right" else (1.0 - hi, 1.0 - lo)


def _rate(
    rng: np.random.Generator, bounds: tuple[float, float], fastest: float, given: float | None
) -> float | None:
    """A speed or scale drawn within ``bounds`` and at most ``fastest`` (None if none fits)."""
    if given is not None:
        return given
    lo, hi = bounds
    return float(rng.uniform(lo, min(hi, fastest))) if fastest >= lo else None


def sample_object(
    rng: np.random.Generator,
    cfg: SamplerConfig,
    colour: str,
    *,
    shape: str | None = None,
    size: str | None = None,
    motion: str | None = None,
    speed: float | None = None,
    scale: float | None = None,
    cross_pillar: bool = False,
) -> tuple[ObjectSpec, Track] | None:
    """Draw one object of ``colour``, placed so that it stays inside the canvas all clip long.

    Attributes not given are drawn from ``cfg``'s weights (respecting the holdout when
    ``cfg.exclude_holdout``); translation speeds and grow factors are drawn from the part
    of their range that fits the clip. Returns None when nothing fits.
    """
    shape = shape or _pick(rng, cfg.shapes)
    size = size or ("large" if rng.random() < cfg.large_prob else "small")
    if motion is None:
        sideways = {k: w for k, w in cfg.motions.items() if k in ("left", "right")}
        motion = _pick(rng, sideways if cross_pillar else cfg.motions)
    if cfg.exclude_holdout and not HOLDOUT.allows(colour, shape, motion):
        return None
    aspect = cfg.width / cfg.height
    h = SIZES[size]
    span = native_times(cfg.frames, cfg.fps)[-1] / MOTION_SPAN_FRAMES  # clip length in spans
    if motion in TRANSLATIONS:
        extent = h / aspect if TRANSLATIONS[motion][0] else h
        speed = _rate(rng, SPEED_RANGE, (1 - extent) / span if span else np.inf, speed)
    if motion == "grow":
        scale = _rate(rng, SCALE_RANGE, min(1 / h, aspect / h), scale)
    elif motion == "shrink":
        scale = _rate(rng, SCALE_RANGE, np.inf, scale)
    if (motion in TRANSLATIONS and speed is None) or (
        motion in ("grow", "shrink") and scale is None
    ):
        return None
    falls = motion in ("fall", "bounce")
    y = float(rng.uniform(h / 2, 0.5 - 1e-6)) if falls else 0.5
    obj = ObjectSpec(colour, shape, size, 0.5, y, motion, speed or 0.0, scale or 1.0)
    box = object_track(obj, cfg.frames, cfg.fps).bbox(aspect)  # placed at x = 0.5
    if cross_pillar and motion in ("left", "right"):
        x_lo, x_hi = _crossing_x(obj, cfg)
    else:
        x_lo, x_hi = 0.5 - box[:, 0].min(), 1.5 - box[:, 2].max()
    y_lo, y_hi = (y, y) if falls else (y - box[:, 1].min(), 1 + y - box[:, 3].max())
    if x_lo > x_hi or y_lo > y_hi:
        return None
    obj = replace(obj, x=float(rng.uniform(x_lo, x_hi)), y=float(rng.uniform(y_lo, y_hi)))
    return obj, object_track(obj, cfg.frames, cfg.fps)


def _scene_objects(
    rng: np.random.Generator, cfg: SamplerConfig, pillar: bool, counting: bool
) -> list[ObjectSpec] | None:
    aspect = cfg.width / cfg.height
    if counting:
        n = int(rng.integers(cfg.count_range[0], cfg.count_range[1] + 1))
        first = sample_object(rng, cfg, _pick(rng, cfg.colours))
        if first is None:
            return None
        template = first[0]
        wanted = [template] * n
    else:
        n = int(_pick(rng, cfg.object_counts))
        colours = []
        for _ in range(n):
            colours.append(_pick(rng, cfg.colours, exclude=set(colours)))
        wanted = colours
    placed: list[tuple[ObjectSpec, np.ndarray]] = []
    for i, want in enumerate(wanted):
        sideways = cfg.motions.get("left", 0) > 0 or cfg.motions.get("right", 0) > 0
        cross = pillar and i == 0 and sideways and rng.random() < cfg.cross_prob
        for _ in range(_TRIES):
            if isinstance(want, ObjectSpec):  # counting: same attributes, new place
                got = sample_object(
                    rng,
                    cfg,
                    want.colour,
                    shape=want.shape,
                    size=want.size,
                    motion=want.motion,
                    speed=want.speed,
                    scale=want.scale,
                )
            else:
                got = sample_object(rng, cfg, want, cross_pillar=cross)
            if got is None:
                continue
            obj, track = got
            box = track.bbox(aspect)
            if pillar and (_visible_fraction(box[[0, -1]]) < 0.5).any():
                continue
            if cross and not passes_behind_pillar(track, aspect):
                continue
            if all(_apart(box, other, cfg.gap) for _, other in placed):
                placed.append((obj, box))
                break
        else:
            return None
    return [o for o, _ in placed]


def sample_scene(rng: np.random.Generator, cfg: SamplerConfig | None = None) -> SceneSpec:
    """Draw one scene from ``cfg`` (defaults: 64x64, 17 frames at 8 fps)."""
    cfg = cfg or SamplerConfig()
    for _ in range(1000):
        background = _pick(rng, cfg.backgrounds)
        counting = rng.random() < cfg.counting_prob
        pillar = not counting and rng.random() < cfg.pillar_prob
        objects = _scene_objects(rng, cfg, pillar, counting)
        if objects is None:
            continue
        stars: list[tuple[float, float]] = []
        if background == "night":
            n_stars = int(rng.integers(cfg.night_stars[0], cfg.night_stars[1] + 1))
            stars = [(float(x), float(y)) for x, y in rng.uniform(0, 1, (n_stars, 2))]
        return SceneSpec(
            objects=tuple(objects),
            width=cfg.width,
            height=cfg.height,
            frames=cfg.frames,
            fps=cfg.fps,
            background=background,
            pillar=pillar,
            counting=counting,
            stars=tuple(stars),
        )
    raise RuntimeError(f"could not place a scene for {cfg}; loosen the weights or the clip length")
