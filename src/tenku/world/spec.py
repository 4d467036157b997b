"""Typed, JSON-serialisable scene specs for the sandbox world.

A :class:`SceneSpec` fully determines a video: the renderer draws it with no hidden
randomness. Coordinates are fractions of the canvas (x = 0 is the viewer's left edge,
y = 0 the top, y = 1 the floor); an object's size is its bounding-box height as a
fraction of the canvas height.
"""

from __future__ import annotations

import json
import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from tenku.world.rules import (
    BACKGROUNDS,
    COLOURS,
    MOTIONS,
    NATIVE_FPS,
    SCALE_RANGE,
    SHAPES,
    SIZES,
    SPEED_RANGE,
    TRANSLATIONS,
)

MAX_OBJECTS = 3  # ordinary scenes hold 1-3 objects of distinct colours
MAX_COUNT = 6  # counting scenes hold up to this many identical objects
MAX_SIDE = 4096  # pixels, a sanity bound on width and height
MAX_FRAMES = 100_000
_EPS = 1e-9


class SpecError(ValueError):
    """A scene spec breaks a rule of the world; the message names the field and the limit."""


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise SpecError(message)


def _check_choice(name: str, value: str, allowed: Any) -> None:
    _check(value in allowed, f"{name}: {value!r} is not one of {sorted(allowed)}")


@dataclass(frozen=True)
class ObjectSpec:
    """One object of a scene and its motion (viewer's point of view)."""

    colour: str  # a name from world.json "colours"
    shape: str  # circle | square | triangle | diamond
    size: str  # small (1/6 of the canvas height) | large (1/4)
    x: float  # start centre, fraction of the canvas width (0 = viewer's left)
    y: float  # start centre, fraction of the canvas height (0 = top, 1 = floor)
    motion: str = "still"  # a name from world.json "motions"
    speed: float = 0.0  # left/right/up/down only: canvas fraction crossed per 16 frames at 8 fps
    scale: float = 1.0  # grow/shrink only: size factor reached after 16 frames at 8 fps

    def __post_init__(self) -> None:
        _check_choice("colour", self.colour, COLOURS)
        _check_choice("shape", self.shape, SHAPES)
        _check_choice("size", self.size, SIZES)
        _check_choice("motion", self.motion, MOTIONS)
        for name in ("x", "y", "speed", "scale"):
            value = getattr(self, name)
            _check(
                isinstance(value, int | float) and math.isfinite(value),
                f"{name}: expected a finite number, got {value!r}",
            )
        _check(0.0 <= self.x <= 1.0, f"x: {self.x} must lie in [0, 1]")
        _check(0.0 <= self.y <= 1.0, f"y: {self.y} must lie in [0, 1]")
        lo, hi = SPEED_RANGE
        if self.motion in TRANSLATIONS:
            _check(
                lo - _EPS <= self.speed <= hi + _EPS,
                f"speed: {self.speed} must lie in [{lo}, {hi}] for motion {self.motion!r}",
            )
        else:
            _check(self.speed == 0.0, f"speed: must be 0 for motion {self.motion!r}")
        lo, hi = SCALE_RANGE
        if self.motion in ("grow", "shrink"):
            _check(
                lo - _EPS <= self.scale <= hi + _EPS,
                f"scale: {self.scale} must lie in [{lo}, {hi}] for motion {self.motion!r}",
            )
        else:
            _check(self.scale == 1.0, f"scale: must be 1 for motion {self.motion!r}")
        if self.motion in ("fall", "bounce"):
            _check(self.y < 0.5, f"y: {self.y} must be < 0.5 (upper half) for {self.motion!r}")

    @property
    def height(self) -> float:
        """Start bounding-box height, as a fraction of the canvas height."""
        return SIZES[self.size]


@dataclass(frozen=True)
class SceneSpec:
    """A whole sandbox-world video: canvas, timing, background, pillar and objects."""

    objects: tuple[ObjectSpec, ...]
    width: int = 64  # pixels, a multiple of 16
    height: int = 64  # pixels, a multiple of 16
    frames: int = 17  # frame count
    fps: float = NATIVE_FPS  # frames per second; motion is defined in seconds
    background: str = "white"  # a name from world.json "backgrounds"
    pillar: bool = False  # the occluding vertical bar at x = 0.5, drawn in front
    counting: bool = False  # every object shares colour, shape, size and motion
    stars: tuple[tuple[float, float], ...] = field(default=())  # night only: (x, y) fractions

    def __post_init__(self) -> None:
        object.__setattr__(self, "objects", tuple(self.objects))
        object.__setattr__(self, "stars", tuple(tuple(s) for s in self.stars))
        for name in ("width", "height"):
            value = getattr(self, name)
            _check(
                isinstance(value, int) and 16 <= value <= MAX_SIDE and value % 16 == 0,
                f"{name}: {value!r} must be a multiple of 16 between 16 and {MAX_SIDE}",
            )
        _check(
            isinstance(self.frames, int) and 1 <= self.frames <= MAX_FRAMES,
            f"frames: {self.frames!r} must be an integer between 1 and {MAX_FRAMES}",
        )
        _check(
            isinstance(self.fps, int | float) and math.isfinite(self.fps) and self.fps > 0,
            f"fps: {self.fps!r} must be a positive number",
        )
        _check_choice("background", self.background, BACKGROUNDS)
        _check(
            all(isinstance(o, ObjectSpec) for o in self.objects),
            "objects: every item must be an ObjectSpec",
        )
        colours = [o.colour for o in self.objects]
        if self.counting:
            _check(
                1 <= len(self.objects) <= MAX_COUNT,
                f"objects: a counting scene holds 1 to {MAX_COUNT} objects, "
                f"got {len(self.objects)}",
            )
            first = self.objects[0]
            same = all(
                (o.colour, o.shape, o.size, o.motion, o.speed, o.scale)
                == (first.colour, first.shape, first.size, first.motion, first.speed, first.scale)
                for o in self.objects
            )
            _check(same, "objects: in a counting scene all share colour, shape, size and motion")
        else:
            _check(
                1 <= len(self.objects) <= MAX_OBJECTS,
                f"objects: a scene holds 1 to {MAX_OBJECTS} objects, got {len(self.objects)}",
            )
            _check(
                len(set(colours)) == len(colours),
                f"objects: colours must differ within a scene, got {colours}",
            )
        _check(
            not self.stars or self.background == "night",
            "stars: only a night background carries stars",
        )
        for sx, sy in self.stars:
            _check(0 <= sx < 1 and 0 <= sy < 1, f"stars: ({sx}, {sy}) must lie in [0, 1)")

    @property
    def seconds(self) -> float:
        """Duration in seconds (frames / fps)."""
        return self.frames / self.fps

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` inverts it exactly."""
        d = asdict(self)
        d["objects"] = [asdict(o) for o in self.objects]
        d["stars"] = [list(s) for s in self.stars]
        return d

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SceneSpec:
        """Build and validate a spec; unknown or missing keys raise :class:`SpecError`."""
        _check(isinstance(data, dict), f"scene: expected a JSON object, got {type(data).__name__}")
        _check_keys("scene", data, cls)
        objects = data.get("objects")
        _check(isinstance(objects, list), "objects: expected a list of objects")
        objs = []
        for i, o in enumerate(objects):
            _check(isinstance(o, dict), f"objects[{i}]: expected a JSON object")
            _check_keys(f"objects[{i}]", o, ObjectSpec)
            try:
                objs.append(ObjectSpec(**o))
            except SpecError as e:
                raise SpecError(f"objects[{i}].{e}") from None
        rest = {k: v for k, v in data.items() if k != "objects"}
        return cls(objects=tuple(objs), **rest)

    @classmethod
    def from_json(cls, text: str) -> SceneSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise SpecError(f"scene: not valid JSON ({e})") from None
        return cls.from_dict(data)


def _check_keys(where: str, data: dict[str, Any], cls: type) -> None:
    known = {f.name for f in fields(cls)}
    required = {
        f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING
    }
    unknown = sorted(set(data) - known)
    missing = sorted(required - set(data))
    _check(not unknown, f"{where}: unknown field(s) {unknown}; known: {sorted(known)}")
    _check(not missing, f"{where}: missing field(s) {missing}")
