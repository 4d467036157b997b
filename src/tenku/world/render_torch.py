"""A batched torch renderer of the sandbox world: the same pixels as :mod:`tenku.world.render`.

Tracks come from the analytic :func:`tenku.world.motion.scene_tracks` on the host (cheap);
each object slot is then rasterised over the whole canvas for all scenes and frames at once,
``(N, T, H, W)``, with the signed distances of :func:`tenku.world.render.shape_coverage` in
float32, and composited in draw order like ``render._blend`` (round half to even), the
pillar last. Scenes are sorted by object count so that the scenes holding slot k are a
prefix of the batch; the rest are left alone, as if padded with coverage 0. Runs unchanged
on CPU and CUDA; pixels match the numpy renderer within one level (on CPU, exactly).

The full-canvas rasterisation does far more arithmetic than the numpy renderer's windows
around each object: it pays off on a GPU; on a CPU the numpy renderer is the faster one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from tenku.world.motion import scene_tracks
from tenku.world.render import pillar_coverage
from tenku.world.rules import BACKGROUNDS, COLOURS, PILLAR_RGB, SHAPES, STAR_RGB
from tenku.world.spec import SceneSpec

_SHARED = ("width", "height", "frames", "fps")  # fields every spec of a batch must share


def _coverage(shape: str, dx: torch.Tensor, dy: torch.Tensor, half: torch.Tensor) -> torch.Tensor:
    """Torch twin of ``shape_coverage``: coverage in [0, 1], float32, broadcast shapes.

    Divisors are device tensors, not Python scalars: CUDA turns division by a host scalar
    into multiplication by its reciprocal, which rounds differently from numpy.
    """

    def const(v: float) -> torch.Tensor:
        return torch.tensor(v, dtype=torch.float32, device=dx.device)

    if shape == "circle":  # float64 root: torch's float32 one on CPU is not correctly rounded
        sd = torch.sqrt((dx * dx + dy * dy).double()).float() - half
    elif shape == "square":
        sd = torch.maximum(dx.abs(), dy.abs()) - half
    elif shape == "diamond":
        sd = (dx.abs() + dy.abs() - half) / const(math.sqrt(2.0))
    elif shape == "triangle":
        sd = torch.maximum(dy - half, (2 * dx.abs() - dy - half) / const(math.sqrt(5.0)))
    else:
        raise ValueError(f"shape: unknown shape {shape!r}")
    return (0.5 - sd).clamp(0.0, 1.0)


def _check_batch(specs: Sequence[SceneSpec]) -> None:
    if not specs:
        raise ValueError("specs: the batch is empty")
    for name in _SHARED:
        values = {getattr(s, name) for s in specs}
        if len(values) > 1:
            raise ValueError(f"{name}: every spec of a batch must share it, got {sorted(values)}")


def _blend_(under: torch.Tensor, alpha: torch.Tensor, rgb: torch.Tensor) -> None:
    """In place: ``under = rint(under + alpha * (rgb - under))`` in float32, like ``_blend``."""
    under.add_(alpha * (rgb - under)).round_()


def render_batch(specs: Sequence[SceneSpec], device: torch.device | str = "cpu") -> torch.Tensor:
    """Render scenes sharing width, height, frames and fps to (N, T, H, W, 3) uint8 on ``device``.

    Pixels equal ``tenku.world.render.render(spec)`` within one level.
    Raises ValueError naming the field when the specs differ in size, frames or fps.
    """
    _check_batch(specs)
    N, T, H, W = len(specs), specs[0].frames, specs[0].height, specs[0].width
    dev = torch.device(device)
    # Most objects first, so that the scenes holding a slot k are a prefix of the batch.
    order = sorted(range(N), key=lambda n: -len(specs[n].objects))
    specs = [specs[n] for n in order]
    counts = [len(s.objects) for s in specs]

    # Host: object centres and half-heights in pixels, float64 like the numpy renderer.
    cx, cy, half = (np.zeros((N, counts[0], T)) for _ in range(3))  # (N, K, T)
    rgb = np.zeros((N, counts[0], 3), np.float32)
    for n, spec in enumerate(specs):
        for k, (obj, track) in enumerate(zip(spec.objects, scene_tracks(spec), strict=True)):
            cx[n, k], cy[n, k], half[n, k] = track.x * W, track.y * H, track.h * H / 2
            rgb[n, k] = COLOURS[obj.colour]
    # Pixel centres (j + 0.5 in any window) less object centres, in float64 then float32
    # exactly as ``_patch``: (N, K, T, W) and (N, K, T, H).
    dx = ((np.arange(W) + 0.5) - cx[..., None]).astype(np.float32)
    dy = ((np.arange(H) + 0.5) - cy[..., None]).astype(np.float32)

    def put(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(dev)

    dx_t, dy_t, half_t, rgb_t = put(dx), put(dy), put(half.astype(np.float32)), put(rgb)

    # Background with 1-pixel stars, as float32 levels, channels first: (N, 3, T, H, W).
    back = put(np.asarray([BACKGROUNDS[s.background] for s in specs], np.float32))  # (N, 3)
    still = back[:, :, None, None].expand(N, 3, H, W).clone()  # (N, 3, H, W)
    stars = [(n, int(sy * H), int(sx * W)) for n, s in enumerate(specs) for sx, sy in s.stars]
    if stars:
        n_i, y_i, x_i = put(np.asarray(stars, np.int64)).unbind(1)
        still[n_i, :, y_i, x_i] = torch.tensor(STAR_RGB, dtype=torch.float32, device=dev)
    canvas = still[:, :, None].expand(N, 3, T, H, W).contiguous()

    # Objects in draw order, one slot at a time over the m scenes that hold it.
    for k in range(counts[0]):
        m = sum(c > k for c in counts)
        alpha = torch.empty((m, T, H, W), dtype=torch.float32, device=dev)
        for shape in SHAPES:  # scenes grouped by the shape in this slot
            rows = [n for n in range(m) if specs[n].objects[k].shape == shape]
            if rows:
                idx = torch.tensor(rows, device=dev)
                alpha[idx] = _coverage(
                    shape,
                    dx_t[idx, k, :, None, :],  # (n, T, 1, W)
                    dy_t[idx, k, :, :, None],  # (n, T, H, 1)
                    half_t[idx, k, :, None, None],  # (n, T, 1, 1)
                )
        _blend_(canvas[:m], alpha[:, None], rgb_t[:m, k, :, None, None, None])

    # The pillar, in front of everything, over the columns it covers.
    rows = [n for n, s in enumerate(specs) if s.pillar]
    if rows:
        cov = pillar_coverage(W)
        cols = np.flatnonzero(cov)
        lo, hi = int(cols[0]), int(cols[-1]) + 1
        idx = torch.tensor(rows, device=dev)
        part = canvas[idx, ..., lo:hi]  # (P, 3, T, H, w), a copy
        pillar = torch.tensor(PILLAR_RGB, dtype=torch.float32, device=dev)[:, None, None, None]
        _blend_(part, put(cov[lo:hi]), pillar)  # cov (w,) over the columns
        canvas[idx, ..., lo:hi] = part

    frames = canvas.permute(0, 2, 3, 4, 1).to(torch.uint8)  # (N, T, H, W, 3)
    out = torch.empty((N, T, H, W, 3), dtype=torch.uint8, device=dev)
    out[torch.tensor(order, device=dev)] = frames  # back to the caller's order
    return out
