"""The vectorised numpy renderer of the sandbox world.

Each object is rasterised over all frames at once as a small (T, Py, Px) window of
anti-aliased coverage (from a signed distance, in pixels) and composited into the uint8
frames window by window; the pillar is drawn last, in front of everything.
"""

from __future__ import annotations

import math
from collections.abc import Collection

import numpy as np

from tenku.world.motion import Track, pillar_span, scene_tracks
from tenku.world.rules import BACKGROUNDS, COLOURS, PILLAR_RGB, STAR_RGB
from tenku.world.spec import SceneSpec

_SQRT2 = math.sqrt(2.0)
_SQRT5 = math.sqrt(5.0)


def shape_coverage(shape: str, dx: np.ndarray, dy: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of pixel centres at offsets ``(dx, dy)`` (pixels).

    ``half`` is half the bounding-box height in pixels; the arrays broadcast together.
    The shape's bounding box is centred on the origin; triangles have their apex up.
    """
    if shape == "circle":
        sd = np.sqrt(dx * dx + dy * dy) - half
    elif shape == "square":
        sd = np.maximum(np.abs(dx), np.abs(dy)) - half
    elif shape == "diamond":
        sd = (np.abs(dx) + np.abs(dy) - half) / _SQRT2
    elif shape == "triangle":
        # apex (0, -half), base corners (+-half, +half): the sides satisfy 2|dx| = dy + half
        sd = np.maximum(dy - half, (2 * np.abs(dx) - dy - half) / _SQRT5)
    else:
        raise ValueError(f"shape: unknown shape {shape!r}")
    return np.clip(0.5 - sd, 0.0, 1.0)


def pillar_coverage(width: int) -> np.ndarray:
    """(W,) fraction of each pixel column covered by the pillar (exact box coverage)."""
    left, right = (v * width for v in pillar_span())
    j = np.arange(width, dtype=np.float32)
    return np.clip(np.minimum(j + 1, right) - np.maximum(j, left), 0.0, 1.0)


def _patch(shape: str, track: Track, width: int, height: int) -> tuple[np.ndarray, ...]:
    """Coverage of one object over all frames: alpha (T, Py, Px), top rows (T,), left cols (T,).

    The window is as large as the object's largest extent (capped at the canvas) and slides
    to stay inside the canvas, so parts of an object outside the canvas are simply not drawn.
    """
    cx = track.x * width  # (T,) pixels
    cy = track.y * height
    half = track.h * height / 2
    size = math.ceil(2 * float(half.max()) + 2) + 1
    px, py = min(size, width), min(size, height)
    x0 = np.clip(np.floor(cx - px / 2).astype(np.int64), 0, width - px)
    y0 = np.clip(np.floor(cy - py / 2).astype(np.int64), 0, height - py)
    dx = x0[:, None] + (np.arange(px) + 0.5)[None, :] - cx[:, None]  # (T, Px)
    dy = y0[:, None] + (np.arange(py) + 0.5)[None, :] - cy[:, None]  # (T, Py)
    alpha = shape_coverage(
        shape,
        dx.astype(np.float32)[:, None, :],
        dy.astype(np.float32)[:, :, None],
        half.astype(np.float32)[:, None, None],
    )  # (T, Py, Px)
    return alpha, y0, x0


def _background(spec: SceneSpec) -> np.ndarray:
    """(T, H, W, 3) uint8 frames of the flat background, with stars at night."""
    T, H, W = spec.frames, spec.height, spec.width
    row = np.tile(np.asarray(BACKGROUNDS[spec.background], np.uint8), W)  # (W * 3,)
    frames = np.empty((T * H, W * 3), np.uint8)
    frames[:] = row  # one long row broadcast: far faster than broadcasting a 3-vector
    frames = frames.reshape(T, H, W, 3)
    for sx, sy in spec.stars:
        frames[:, int(sy * H), int(sx * W)] = STAR_RGB
    return frames


def _blend(region: np.ndarray, alpha: np.ndarray, rgb: tuple[int, int, int]) -> np.ndarray:
    """Composite colour ``rgb`` with coverage ``alpha`` (..., 1) over uint8 ``region`` (..., 3)."""
    under = region.astype(np.float32)
    return np.rint(under + alpha * (np.asarray(rgb, np.float32) - under)).astype(np.uint8)


def _layers(
    spec: SceneSpec, with_masks: bool, hide: Collection[int] = ()
) -> tuple[np.ndarray, np.ndarray | None]:
    T, H, W = spec.frames, spec.height, spec.width
    frames = _background(spec)
    masks = np.zeros((len(spec.objects), T, H, W), np.float32) if with_masks else None
    for i, (obj, track) in enumerate(zip(spec.objects, scene_tracks(spec), strict=True)):
        if i in hide:
            continue
        alpha, y0, x0 = _patch(obj.shape, track, W, H)
        py, px = alpha.shape[1:]
        rgb = COLOURS[obj.colour]
        for t in range(T):  # basic slicing per frame beats a fancy-indexed gather/scatter
            win = np.s_[t, y0[t] : y0[t] + py, x0[t] : x0[t] + px]
            frames[win] = _blend(frames[win], alpha[t, :, :, None], rgb)
            if masks is not None:
                masks[(slice(None), *win)] *= 1.0 - alpha[t]  # later objects are drawn on top
                masks[(i, *win)] = alpha[t]
    if spec.pillar:
        cov = pillar_coverage(W)
        cols = np.flatnonzero(cov)
        lo, hi = int(cols[0]), int(cols[-1]) + 1
        c = cov[lo:hi, None]  # (w, 1)
        frames[:, :, lo:hi] = _blend(frames[:, :, lo:hi], c, PILLAR_RGB)
        if masks is not None:
            masks[..., lo:hi] *= 1.0 - c[:, 0]
    return frames, masks


def render(spec: SceneSpec, *, hide: Collection[int] = ()) -> np.ndarray:
    """Render ``spec`` to frames of shape (T, H, W, 3), uint8 RGB.

    ``hide`` lists indices of objects left out (to build counterfactual videos).
    """
    return _layers(spec, with_masks=False, hide=hide)[0]


def render_with_masks(spec: SceneSpec) -> tuple[np.ndarray, np.ndarray]:
    """Frames (T, H, W, 3) uint8 and each object's visible coverage (N, T, H, W) float32.

    Visible coverage accounts for objects drawn later and for the pillar in front.
    """
    frames, masks = _layers(spec, with_masks=True)
    assert masks is not None
    return frames, masks
