"""Known ways to break a ground-truth video, each aimed at one metric.

The benchmark must catch each of them (tests/test_metrics.py): a corruption takes the
scene and its rendered frames ``(T, H, W, 3)`` and returns frames of the same shape.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from tenku.world.motion import hidden_by_pillar, passes_behind_pillar, scene_tracks
from tenku.world.render import render
from tenku.world.rules import COLOURS
from tenku.world.spec import SceneSpec

Corruption = Callable[[np.ndarray, SceneSpec, np.random.Generator], np.ndarray]


def mirror(frames: np.ndarray, spec: SceneSpec, rng: np.random.Generator) -> np.ndarray:
    """Left and right exchanged (what a model that confuses them would show)."""
    return frames[:, :, ::-1].copy()


def swap_colours(frames: np.ndarray, spec: SceneSpec, rng: np.random.Generator) -> np.ndarray:
    """The first two objects exchange colours (one object takes an unused colour)."""
    objs = list(spec.objects)
    if spec.counting:
        return frames
    if len(objs) == 1:
        spare = next(c for c in COLOURS if c != objs[0].colour)
        objs[0] = replace(objs[0], colour=spare)
    else:
        objs[0], objs[1] = (
            replace(objs[0], colour=objs[1].colour),
            replace(objs[1], colour=objs[0].colour),
        )
    return render(replace(spec, objects=tuple(objs)))


def delete_behind_pillar(
    frames: np.ndarray, spec: SceneSpec, rng: np.random.Generator
) -> np.ndarray:
    """Objects that pass behind the pillar never come out: removed once wholly hidden."""
    aspect = spec.width / spec.height
    tracks = scene_tracks(spec)
    crossing = [i for i, t in enumerate(tracks) if spec.pillar and passes_behind_pillar(t, aspect)]
    if not crossing:
        return frames
    without = render(spec, hide=crossing)
    out = frames.copy()
    for i in crossing:
        hidden = np.flatnonzero(hidden_by_pillar(tracks[i].bbox(aspect)))
        start = hidden[0] if len(hidden) else int(np.argmin(np.abs(tracks[i].x - 0.5)))
        out[start:] = without[start:]
    return out


def freeze(frames: np.ndarray, spec: SceneSpec, rng: np.random.Generator) -> np.ndarray:
    """Nothing moves: the first frame, repeated."""
    return np.repeat(frames[:1], len(frames), axis=0)


def reverse(frames: np.ndarray, spec: SceneSpec, rng: np.random.Generator) -> np.ndarray:
    """Time runs backwards: falls rise from the floor, slowing down."""
    return frames[::-1].copy()


def shuffle(frames: np.ndarray, spec: SceneSpec, rng: np.random.Generator) -> np.ndarray:
    """Frames in a random order."""
    return frames[rng.permutation(len(frames))]


CORRUPTIONS: dict[str, Corruption] = {
    "mirror": mirror,
    "swap_colours": swap_colours,
    "delete_behind_pillar": delete_behind_pillar,
    "freeze": freeze,
    "reverse": reverse,
    "shuffle": shuffle,
}
