"""The sandbox world's fixed rules, read once from the packaged ``world.json`` and
``holdout.json`` (copies of ``shared/world``; a test keeps them equal).

Everything here is a constant of the world: palettes, sizes, the pillar, motions,
gravity and the held-out combinations that training data must never contain.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

RGB = tuple[int, int, int]


def _load(name: str) -> dict[str, Any]:
    return json.loads(resources.files("tenku.world").joinpath(f"data/{name}").read_text())


@dataclass(frozen=True)
class Holdout:
    """Combinations that never appear in training videos or captions."""

    colour_shape: frozenset[tuple[str, str]]
    colour_motion: frozenset[tuple[str, str]]

    def allows(self, colour: str, shape: str, motion: str) -> bool:
        """True when an object of this colour, shape and motion may appear in training data."""
        return (colour, shape) not in self.colour_shape and (
            colour,
            motion,
        ) not in self.colour_motion


_WORLD = _load("world.json")
_HOLDOUT = _load("holdout.json")

NATIVE_FPS: float = float(_WORLD["fps"])
BACKGROUNDS: dict[str, RGB] = {k: tuple(v) for k, v in _WORLD["backgrounds"].items()}
STAR_RGB: RGB = tuple(_WORLD["star_rgb"])
COLOURS: dict[str, RGB] = {k: tuple(v) for k, v in _WORLD["colours"].items()}
OBJECT_MIN_SATURATION: float = _WORLD["object_min_saturation"]
OBJECT_MIN_VALUE: float = _WORLD["object_min_value"]
SHAPES: tuple[str, ...] = tuple(_WORLD["shapes"])
SIZES: dict[str, float] = dict(_WORLD["sizes"])
PILLAR_RGB: RGB = tuple(_WORLD["pillar"]["rgb"])
PILLAR_CENTRE_X: float = _WORLD["pillar"]["centre_x"]
PILLAR_WIDTH: float = _WORLD["pillar"]["width"]
MOTIONS: tuple[str, ...] = tuple(_WORLD["motions"])
GRAVITY: float = _WORLD["gravity_per_frame2"]  # canvas heights per native frame squared
RESTITUTION: float = _WORLD["restitution"]
HOLDOUT = Holdout(
    colour_shape=frozenset(tuple(p) for p in _HOLDOUT["colour_shape"]),
    colour_motion=frozenset(tuple(p) for p in _HOLDOUT["colour_motion"]),
)

# Derived constants of the renderer, stated in WORLD.md.
MOTION_SPAN_FRAMES = 16  # native frames over which translation speeds and grow/shrink are defined
TRANSLATIONS: dict[str, tuple[float, float]] = {  # unit direction (dx, dy), viewer's point of view
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
}
SPEED_RANGE = (0.4, 1.0)  # canvas fraction crossed per MOTION_SPAN_FRAMES (left/right/up/down)
SCALE_RANGE = (1.5, 2.0)  # grow/shrink factor over MOTION_SPAN_FRAMES
