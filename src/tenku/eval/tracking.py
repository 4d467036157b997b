"""Linking per-frame detections into object tracks, through occlusions by the pillar.

Two steps. Tracklets: detections of one colour are matched from each frame to the next with
the Hungarian algorithm on the distance to each tracklet's predicted position (constant
velocity). Stitching: a tracklet that ends is joined to one of its colour that starts later
when their shapes and sizes agree and the later one continues the earlier one's motion (or,
with no motion to go by, comes out of the pillar at the height where the first went in);
the most plausible joins are made first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from scipy.optimize import linear_sum_assignment

from tenku.world.motion import pillar_span
from tenku.world.rules import NATIVE_FPS, SIZES

if TYPE_CHECKING:
    from tenku.eval.perception import Detection

STEP_GATE = 0.5  # largest jump between frames at 8 fps, fraction of the canvas' long side
STITCH_GATE = 0.1  # a stitched tracklet starts this near the predicted place (+ object size)
SIZE_RATIO = 1.3  # stitched tracklets agree in size within this ratio
SIZE_CLASS_TOL = 0.15  # a track's median size names a size class within this relative error
_INFEASIBLE = 1e9


@dataclass(frozen=True)
class ObjectTrack:
    """One object over a whole video. Arrays are ``(T,)``; x, y, h are NaN where not visible.

    ``x, y`` are bounding-box centres and ``h`` bounding-box heights in canvas fractions; on
    ``partial`` frames (clipped by the pillar or the canvas edge) they describe the visible
    part. ``colour`` is the majority colour; ``shape`` the majority shape over whole frames
    (over partial frames whose shape could be told, if never whole); ``h_median`` the median
    height over whole frames (NaN if never whole) and ``size`` its size class
    ('small'/'large') when within SIZE_CLASS_TOL of one, else None. ``index[t]`` is the
    track's detection in ``frames[t].detections``, -1 where not visible.
    """

    colour: str
    shape: str | None
    size: str | None
    h_median: float
    x: np.ndarray
    y: np.ndarray
    h: np.ndarray
    visible: np.ndarray
    partial: np.ndarray
    index: np.ndarray


@dataclass
class _Tracklet:
    """Observations ``(frame, index, detection)`` of one object, in frame order."""

    colour: str
    obs: list[tuple[int, int, Detection]] = field(default_factory=list)

    @property
    def whole(self) -> list[tuple[int, int, Detection]]:
        return [o for o in self.obs if not o[2].partial]

    def shape(self) -> str | None:
        whole = Counter(d.shape for _, _, d in self.whole if d.shape)
        seen = whole or Counter(d.shape for _, _, d in self.obs if d.shape)
        return seen.most_common(1)[0][0] if seen else None

    def end(self, scale: np.ndarray, last: bool) -> tuple[int, np.ndarray, np.ndarray | None]:
        """(frame, bbox centre (2,) in pixels, velocity (2,) in pixels per frame or None) at
        the tracklet's last (or first) whole frame; the velocity needs two whole frames,
        since a clipped object's visible centre does not move with it."""
        seen = self.whole or self.obs
        pair = seen[-2:] if last else seen[:2]
        t, _, d = pair[-1] if last else pair[0]
        if len(pair) < 2 or not self.whole:
            return t, _xy(d, scale), None
        (s0, _, d0), (s1, _, d1) = pair
        return t, _xy(d, scale), (_xy(d1, scale) - _xy(d0, scale)) / (s1 - s0)


def _xy(d: Detection, scale: np.ndarray) -> np.ndarray:
    return np.asarray([d.x, d.y]) * scale


def _step_links(
    detections: Sequence[Sequence[Detection]], scale: np.ndarray, fps: float
) -> list[_Tracklet]:
    """Tracklets: each frame's detections matched to the tracklets seen in the frame before."""
    tracklets: list[_Tracklet] = []
    gate = STEP_GATE * scale.max() * max(1.0, NATIVE_FPS / fps)  # slow clips jump further
    live: list[int] = []  # tracklets seen in the previous frame
    for t, dets in enumerate(detections):
        seen = []
        for colour in sorted({d.colour for d in dets}):
            cols = [i for i, d in enumerate(dets) if d.colour == colour]
            rows = [k for k in live if tracklets[k].colour == colour]
            cost = np.full((len(rows), len(cols)), _INFEASIBLE)
            for a, k in enumerate(rows):
                obs = tracklets[k].obs
                pred = _xy(obs[-1][2], scale)
                if len(obs) >= 2:  # constant velocity
                    pred = pred + (pred - _xy(obs[-2][2], scale)) / (obs[-1][0] - obs[-2][0])
                for b, i in enumerate(cols):
                    d = float(np.linalg.norm(np.clip(pred, 0, scale) - _xy(dets[i], scale)))
                    if d <= gate + max(dets[i].h, obs[-1][2].h) * scale[1]:
                        cost[a, b] = d
            matched = {}
            for a, b in zip(*linear_sum_assignment(cost), strict=True):
                if cost[a, b] < _INFEASIBLE:
                    matched[cols[b]] = rows[a]
            for i in cols:
                if i not in matched:
                    tracklets.append(_Tracklet(colour))
                    matched[i] = len(tracklets) - 1
                tracklets[matched[i]].obs.append((t, i, dets[i]))
                seen.append(matched[i])
        live = seen
    return tracklets


def _touches_pillar(d: Detection, scale: np.ndarray) -> bool:
    edges = [(d.x - d.w / 2) * scale[0], (d.x + d.w / 2) * scale[0]]
    return d.partial and min(abs(e - p * scale[0]) for e in edges for p in pillar_span()) <= 2


def _stitch_cost(a: _Tracklet, b: _Tracklet, scale: np.ndarray, pillar: bool) -> float:
    """Pixels between where tracklet ``a`` (which ends first) would be and where ``b`` is,
    or _INFEASIBLE when they cannot be one object."""
    if a.colour != b.colour or a.obs[-1][0] >= b.obs[0][0]:
        return _INFEASIBLE
    sa, sb = a.shape(), b.shape()
    if a.whole and b.whole:
        ratio = b.whole[0][2].h / a.whole[-1][2].h
        if (sa and sb and sa != sb) or not 1 / SIZE_RATIO <= ratio <= SIZE_RATIO:
            return _INFEASIBLE
    ta, pa, va = a.end(scale, last=True)
    tb, pb, vb = b.end(scale, last=False)
    errors = []
    if va is not None:
        errors.append(np.linalg.norm(pa + va * (tb - ta) - pb))
    if vb is not None:
        errors.append(np.linalg.norm(pb - vb * (tb - ta) - pa))
    last, first = a.obs[-1][2], b.obs[0][2]
    dy = abs(first.y - last.y) * scale[1]
    size = max(last.h, first.h) * scale[1]
    if pillar and _touches_pillar(last, scale) and _touches_pillar(first, scale):
        errors.append(dy if dy <= size / 2 + 2 else _INFEASIBLE)  # out at the height it went in
    cost = float(min(errors, default=_INFEASIBLE))
    return cost if cost <= STITCH_GATE * scale.max() + size else _INFEASIBLE


def _size_class(h: float) -> str | None:
    name = min(SIZES, key=lambda k: abs(h / SIZES[k] - 1))
    return name if abs(h / SIZES[name] - 1) <= SIZE_CLASS_TOL else None


def _finish(track: _Tracklet, frames: int) -> ObjectTrack:
    x, y, h = (np.full(frames, np.nan) for _ in range(3))
    visible, partial = np.zeros(frames, bool), np.zeros(frames, bool)
    index = np.full(frames, -1, np.int64)
    for t, i, d in track.obs:
        x[t], y[t], h[t], visible[t], partial[t], index[t] = d.x, d.y, d.h, True, d.partial, i
    whole = h[visible & ~partial]
    h_median = float(np.median(whole)) if len(whole) else float("nan")
    colour = Counter(d.colour for _, _, d in track.obs).most_common(1)[0][0]
    size = _size_class(h_median) if len(whole) else None
    return ObjectTrack(colour, track.shape(), size, h_median, x, y, h, visible, partial, index)


def link_tracks(
    detections: Sequence[Sequence[Detection]],
    width: int,
    height: int,
    fps: float,
    pillar: bool,
) -> tuple[ObjectTrack, ...]:
    """Link ``detections[t]`` (each frame's detections) into tracks, ordered by first
    appearance. ``pillar``: a pillar stands in the video (objects may hide behind it)."""
    scale = np.asarray([width, height], np.float64)
    tracklets = _step_links(detections, scale, fps)
    pairs = sorted(
        (c, i, j)
        for i, a in enumerate(tracklets)
        for j, b in enumerate(tracklets)
        if (c := _stitch_cost(a, b, scale, pillar)) < _INFEASIBLE
    )
    head = list(range(len(tracklets)))  # head[k]: the tracklet k was stitched onto
    tail = list(range(len(tracklets)))  # tail[k]: the last tracklet stitched onto head k
    for _, i, j in pairs:  # most plausible first; each tracklet continues at most once
        if head[j] == j and tail[head[i]] == i and head[i] != j:
            for k in range(len(tracklets)):
                if head[k] == j:
                    head[k] = head[i]
            tail[head[i]] = tail[j]
    tracks = [
        _Tracklet(
            tracklets[k].colour,
            [o for m in range(len(tracklets)) if head[m] == k for o in tracklets[m].obs],
        )
        for k in range(len(tracklets))
        if head[k] == k
    ]
    for tr in tracks:
        tr.obs.sort(key=lambda o: o[0])
    return tuple(_finish(tr, len(detections)) for tr in tracks)
