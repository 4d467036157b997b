"""Analytic object paths: where every object is, and how big, at every frame.

These are the world's ground truth (WORLD.md "Motions"); the renderer draws them and
the benchmark scores against them. Time is measured in native frames (8 fps), so a
clip at another frame rate shows the same motion in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tenku.world.rules import (
    GRAVITY,
    MOTION_SPAN_FRAMES,
    NATIVE_FPS,
    PILLAR_CENTRE_X,
    PILLAR_WIDTH,
    RESTITUTION,
    TRANSLATIONS,
)
from tenku.world.spec import ObjectSpec, SceneSpec

_MIN_BOUNCE = 1e-5  # canvas heights: bounces lower than this have come to rest


@dataclass(frozen=True)
class Track:
    """An object's state per frame, all as fractions of the canvas.

    x: (T,) centre, fraction of width; y: (T,) centre, fraction of height;
    h: (T,) bounding-box height, fraction of canvas height (width is the same in pixels).
    """

    x: np.ndarray
    y: np.ndarray
    h: np.ndarray

    def bbox(self, aspect: float) -> np.ndarray:
        """(T, 4) boxes ``(left, top, right, bottom)`` in canvas fractions.

        ``aspect`` is width / height of the canvas (a shape is as wide in pixels as it is tall).
        """
        half_w = self.h / 2 / aspect
        half_h = self.h / 2
        return np.stack([self.x - half_w, self.y - half_h, self.x + half_w, self.y + half_h], -1)


def native_times(frames: int, fps: float) -> np.ndarray:
    """(T,) time of each frame in native frames (8 fps units)."""
    return np.arange(frames, dtype=np.float64) * (NATIVE_FPS / fps)


def fall_y(y0: float, h: float, t: np.ndarray) -> np.ndarray:
    """Centre height of an object dropped at rest from ``y0``; it stops on the floor."""
    floor = 1.0 - h / 2
    return np.minimum(y0 + 0.5 * GRAVITY * t**2, max(floor, y0))


def bounce_y(y0: float, h: float, t: np.ndarray) -> np.ndarray:
    """Centre height of an object dropped at rest from ``y0`` that bounces with restitution.

    Each impact keeps RESTITUTION of the speed, so each apex is RESTITUTION**2 of the last
    drop height; the geometric series of flights ends in finite time, after which it rests.
    """
    floor = 1.0 - h / 2
    drop = floor - y0
    if drop <= 0:
        return np.full_like(t, y0)
    t_hit = np.sqrt(2 * drop / GRAVITY)
    # launch speed and flight time of each bounce k = 1, 2, ...
    n = int(np.ceil(np.log(_MIN_BOUNCE / drop) / (2 * np.log(RESTITUTION)))) + 1
    speeds = GRAVITY * t_hit * RESTITUTION ** np.arange(1, n + 1)
    starts = t_hit + np.concatenate([[0.0], np.cumsum(2 * speeds / GRAVITY)])  # (n + 1,)
    y = np.full_like(t, floor)
    falling = t < t_hit
    y[falling] = y0 + 0.5 * GRAVITY * t[falling] ** 2
    k = np.searchsorted(starts, t, side="right") - 1  # index of the flight each t is in
    flying = ~falling & (k < n)
    s = t[flying] - starts[k[flying]]
    y[flying] = floor - (speeds[k[flying]] * s - 0.5 * GRAVITY * s**2)
    return y


def object_track(obj: ObjectSpec, frames: int, fps: float) -> Track:
    """The analytic path of one object over ``frames`` frames at ``fps``."""
    t = native_times(frames, fps)
    x = np.full_like(t, obj.x)
    y = np.full_like(t, obj.y)
    h = np.full_like(t, obj.height)
    if obj.motion in TRANSLATIONS:
        dx, dy = TRANSLATIONS[obj.motion]
        travelled = obj.speed * t / MOTION_SPAN_FRAMES
        x = obj.x + dx * travelled
        y = obj.y + dy * travelled
    elif obj.motion == "fall":
        y = fall_y(obj.y, obj.height, t)
    elif obj.motion == "bounce":
        y = bounce_y(obj.y, obj.height, t)
    elif obj.motion in ("grow", "shrink"):
        end = obj.scale if obj.motion == "grow" else 1.0 / obj.scale
        progress = np.minimum(t / MOTION_SPAN_FRAMES, 1.0)  # the size holds after 16 frames
        h = obj.height * (1.0 + (end - 1.0) * progress)
    return Track(x=x, y=y, h=h)


def scene_tracks(spec: SceneSpec) -> list[Track]:
    """One :class:`Track` per object of ``spec``, in draw order."""
    return [object_track(o, spec.frames, spec.fps) for o in spec.objects]


def pillar_span() -> tuple[float, float]:
    """The pillar's ``(left, right)`` edges in fractions of the canvas width (any aspect)."""
    return PILLAR_CENTRE_X - PILLAR_WIDTH / 2, PILLAR_CENTRE_X + PILLAR_WIDTH / 2


def hidden_by_pillar(box: np.ndarray) -> np.ndarray:
    """(T,) True where boxes (T, 4) ``(left, top, right, bottom)`` lie wholly behind the pillar."""
    left, right = pillar_span()
    return (box[:, 0] >= left) & (box[:, 2] <= right)


def passes_behind_pillar(track: Track, aspect: float) -> bool:
    """True when the object starts wholly on one side of the pillar and ends wholly on the other."""
    left, right = pillar_span()
    box = track.bbox(aspect)
    start_left, start_right = box[0, 2] <= left, box[0, 0] >= right
    end_left, end_right = box[-1, 2] <= left, box[-1, 0] >= right
    return bool((start_left and end_right) or (start_right and end_left))
