"""Perception of sandbox-world videos: what is in a video, frame by frame and over time.

Reads any video of the world (any size and frame rate, blurred or H.264-compressed) with
nothing but WORLD.md's rules, so it scores generated videos as well as rendered ones.

Per frame: every pixel is classified at once through a colour lookup table (object palette
colour by hue among saturated, bright pixels; background and pillar colours by distance),
object pixels are labelled into connected components per colour (codec fringes joined to
their object, objects of one colour that touch split apart), and each component is measured
from its sub-pixel coverage ``alpha``, read back from the pixel colours as the blend between
the local background and the object colour (mostly from luma, which 4:2:0 video keeps
sharp): area, centroid and spread. The shape is the template (drawn like the renderer,
blurred to the measured spread) that fits ``alpha`` best; size and bounding-box centre follow
from area and centroid, exact to a fraction of a pixel even under blur. An object is
``partial`` when the pillar or the canvas edge clips it. Over time, detections are linked
into tracks (:mod:`tenku.eval.tracking`).
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from tenku.eval.tracking import ObjectTrack, link_tracks
from tenku.world.motion import pillar_span
from tenku.world.render import shape_coverage
from tenku.world.rules import BACKGROUNDS, COLOURS, NATIVE_FPS, PILLAR_RGB, SIZES

# --- thresholds (see the measured figures in tests/test_perception.py) ----------------------
MIN_SATURATION = 0.45  # object pixels: HSV saturation at least this (palette >= 0.7) ...
MIN_VALUE = 0.45  # ... and value at least this; below, edge blends and codec fringes
BACKGROUND_TOL = 36.0  # RGB distance from a background colour (nearest pair is 72 apart)
PILLAR_TOL = 36.0  # RGB distance from the pillar colour
BACKGROUND_MIN_SHARE = 0.25  # a frame's background covers at least this share of its pixels
PILLAR_MIN_SHARE = 0.8  # share of the pillar band's inner pixels (not object-coloured) of the
# pillar colour; at least half of them in any case
MIN_AREA_SHARE = 0.15  # components below this share of the smallest object's area are noise
MIN_AREA_PX = 2  # ... and never fewer pixels than this
RING_PX = 2  # coverage is read this far around a component (blur tails, anti-aliasing)
OFF_LINE_TOL = 150.0  # RGB distance off the background-object blend line: another colour
TOUCH_PX = 1.5  # a clipped piece ending this close to the pillar band is an end of an object
# behind it (wider objects show both ends)
CLIP_TOL = (0.5, 0.04)  # clipped by the canvas edge if the fitted box crosses by > max(px,
# share of its height)
MAX_MISFIT = 0.25  # residual / area above which no shape fits (merged or odd blobs)
MAX_PARTIAL_MISFIT = 0.05  # ... the same for a clipped object: only a sliver may be hidden
FRAGMENT_SHARE = 0.5  # components below this share of the smallest object's area, within
# RING_PX of a component twice their size, are codec fringes of it and join it
SPLIT_ERODE = 3  # a blob no shape fits is split where up to this many erosions cut it
LUMA_CONTRAST = 20.0  # coverage is read from luma (sharp in 4:2:0 video), with as much chroma
# as it takes to reach this contrast between object and background (yellow on sand: 10)
LUT_BITS = 6  # bits per channel of the colour lookup table

SHAPE_AREA = {"circle": math.pi / 4, "square": 1.0, "triangle": 0.5, "diamond": 0.5}  # / h^2
COLOUR_NAMES = tuple(COLOURS)
BACKGROUND_NAMES = tuple(BACKGROUNDS)
_BG_CODE = len(COLOUR_NAMES)  # codes: colours 0..7, backgrounds 8..11, pillar 12, other 255
_PILLAR_CODE = _BG_CODE + len(BACKGROUND_NAMES)
_NONE = 255
_YUV = np.asarray([[0.2126, 0.7152, 0.0722], [-0.1146, -0.3854, 0.5], [0.5, -0.4542, -0.0458]])
_SMALLEST_AREA = min(SIZES.values()) ** 2 / 4 * min(SHAPE_AREA.values())  # shrunk by 2: / H^2


@dataclass(frozen=True)
class Detection:
    """One object seen in one frame; positions and sizes are canvas fractions.

    ``x, y`` is the bounding-box centre (the convention of :class:`tenku.world.motion.Track`),
    ``h`` the bounding-box height (fraction of the canvas height) and ``w`` its width (fraction
    of the canvas width). When ``partial`` (clipped by the pillar or the canvas edge) these
    describe the visible part only, and ``shape`` is None unless the part hidden is a sliver.
    ``shape`` is also None when no shape fits (e.g. objects of one colour run together).
    ``area`` is the visible area in pixels, each pixel counted by its coverage.
    """

    colour: str
    shape: str | None
    x: float
    y: float
    h: float
    w: float
    area: float
    partial: bool


@dataclass(frozen=True)
class FrameView:
    """What one frame shows: background name (None if none matches), pillar, objects."""

    background: str | None
    pillar: bool
    detections: tuple[Detection, ...]


@dataclass(frozen=True)
class Perception:
    """What a whole video shows. ``background``/``pillar`` are the majority over frames."""

    width: int
    height: int
    fps: float
    background: str | None
    pillar: bool
    frames: tuple[FrameView, ...]
    tracks: tuple[ObjectTrack, ...]


def _hue(rgb: np.ndarray) -> np.ndarray:
    """Hue angle in degrees [0, 360) of (..., 3) float RGB, HSV's hexagonal hue."""
    r, g, b = np.moveaxis(rgb, -1, 0)
    mx, mn = rgb.max(-1), rgb.min(-1)
    d = np.maximum(mx - mn, 1e-6)
    h = np.where(mx == r, (g - b) / d, np.where(mx == g, 2 + (b - r) / d, 4 + (r - g) / d))
    return (h * 60) % 360


@functools.cache
def _colour_table() -> np.ndarray:
    """(2 ** (3 * LUT_BITS),) uint8 class code of every quantised RGB colour."""
    levels = np.arange(2**LUT_BITS, dtype=np.float64)
    centre = (levels + 0.5) * 2 ** (8 - LUT_BITS)
    rgb = np.stack(np.meshgrid(centre, centre, centre, indexing="ij"), -1).reshape(-1, 3)
    mx, mn = rgb.max(-1), rgb.min(-1)
    code = np.full(len(rgb), _NONE, np.uint8)
    refs = np.asarray([*BACKGROUNDS.values(), PILLAR_RGB], np.float64)
    dist = np.linalg.norm(rgb[:, None] - refs[None], axis=-1)  # (N, 5)
    near = dist.argmin(1)
    tol = np.where(near < len(BACKGROUNDS), BACKGROUND_TOL, PILLAR_TOL)
    ok = dist[np.arange(len(rgb)), near] <= tol
    code[ok] = _BG_CODE + near[ok]
    bright = (mx >= MIN_VALUE * 255) & (mx - mn >= MIN_SATURATION * mx)
    palette = _hue(np.asarray(list(COLOURS.values()), np.float64))
    gap = np.abs(_hue(rgb[bright])[:, None] - palette[None])
    code[bright] = np.minimum(gap, 360 - gap).argmin(1)
    return code


def classify_pixels(video: np.ndarray) -> np.ndarray:
    """(T, H, W) uint8 class code of every pixel of ``video`` (T, H, W, 3) uint8: the index
    of a palette colour (saturated and bright), ``8 + i`` for background ``i``, 12 for the
    pillar colour, 255 for anything else."""
    shift = 8 - LUT_BITS
    q = (video >> shift).astype(np.int32)
    return _colour_table()[(q[..., 0] << (2 * LUT_BITS)) | (q[..., 1] << LUT_BITS) | q[..., 2]]


def _pillar_columns(width: int) -> tuple[float, float, slice]:
    """The pillar band's edges in pixels and the slice of columns it touches at all."""
    left, right = (v * width for v in pillar_span())
    return left, right, slice(math.floor(left), math.ceil(right))


def _scene_frames(codes: np.ndarray) -> tuple[list[str | None], np.ndarray]:
    """Per-frame background name (None when no background colour dominates) and pillar."""
    T, H, W = codes.shape
    counts = np.bincount(
        (np.arange(T, dtype=np.int64)[:, None] * 256 + codes.reshape(T, -1)).ravel(),
        minlength=T * 256,
    ).reshape(T, 256)
    bg_counts = counts[:, _BG_CODE:_PILLAR_CODE]
    best = bg_counts.argmax(1)
    share = bg_counts[np.arange(T), best] / (H * W)
    backgrounds = [
        BACKGROUND_NAMES[b] if s >= BACKGROUND_MIN_SHARE else None
        for b, s in zip(best, share, strict=True)
    ]
    left, right, _ = _pillar_columns(W)
    inner = codes[:, :, math.ceil(left) : math.floor(right)]
    shown = (inner == _PILLAR_CODE).mean((1, 2))
    covered = (inner < len(COLOUR_NAMES)).mean((1, 2))  # objects wrongly drawn in front
    pillar = (shown >= 0.5) & (shown >= PILLAR_MIN_SHARE * (1 - covered))
    return backgrounds, pillar


def _grow(mask: np.ndarray, steps: int) -> np.ndarray:
    """``mask`` (P, Q) dilated ``steps`` times by the 4-neighbour cross (a diamond)."""
    out = mask
    for _ in range(steps):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def _median(rgb: np.ndarray) -> np.ndarray:
    """Per-channel median of (N, 3) colours (N > 0)."""
    return np.partition(rgb, len(rgb) // 2, axis=0)[len(rgb) // 2]


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of (P, Q) ``image``, zero outside."""
    r = max(1, math.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    image = ndimage.correlate1d(image, k, 0, mode="constant")
    return ndimage.correlate1d(image, k, 1, mode="constant")


def _moments(a: np.ndarray, ys: np.ndarray, xs: np.ndarray, m: float) -> tuple[float, ...]:
    """Centroid x, y and spread (mean variance of x and y) of weights ``a`` (P, Q) of sum
    ``m`` at pixel centres ``ys`` (P,), ``xs`` (Q,)."""
    rows, cols = a.sum(1), a.sum(0)
    cx, cy = float(cols @ xs) / m, float(rows @ ys) / m
    return cx, cy, float(cols @ (xs - cx) ** 2 + rows @ (ys - cy) ** 2) / (2 * m)


def _fit_shape(
    alpha: np.ndarray, valid: np.ndarray, y0: int, x0: int
) -> tuple[str | None, float, float, float, float]:
    """Fit a shape to the coverage ``alpha`` (P, Q) of a patch at rows ``y0``, columns ``x0``.

    Returns (shape or None, bbox centre x, centre y, height (pixels), misfit = residual / area).
    """
    a = np.where(valid, alpha, 0.0)
    m = float(a.sum())
    if m < 1.0:
        return None, 0.0, 0.0, 0.0, math.inf
    ys, xs = y0 + np.arange(a.shape[0]) + 0.5, x0 + np.arange(a.shape[1]) + 0.5
    cx, cy, spread = _moments(a, ys, xs, m)
    best: tuple[str | None, float, float, float, float] = (None, cx, cy, 0.0, math.inf)
    for shape, k in SHAPE_AREA.items():
        h = math.sqrt(m / k)
        by = cy - h / 6 if shape == "triangle" else cy  # a triangle's centroid is h/6 lower
        tpl = shape_coverage(shape, xs[None] - cx, ys[:, None] - by, np.asarray(h / 2))
        if tpl.sum() <= 0:
            continue
        extra = spread - _moments(tpl, ys, xs, float(tpl.sum()))[2]
        if extra > 0.01:  # blurred: blur the template as much (variances add)
            tpl = _blur(tpl, math.sqrt(extra))
        misfit = float((((a - tpl) * valid) ** 2).sum()) / m
        if misfit < best[4]:
            best = (shape, cx, by, h, misfit)
    return best


def _coverage(
    frame: np.ndarray,
    labels: np.ndarray,
    index: int,
    box: tuple[slice, slice],
    colour: str,
    pillar: bool,
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Coverage of component ``index`` of ``labels`` (H, W) read from ``frame`` (H, W, 3).

    The patch is the component's box ``box`` grown by RING_PX. Each pixel is taken as a blend
    between the local background (median of the patch away from every component) and the
    object's colour (median of its interior, or the palette's ``colour`` if it has none);
    the blend weight is read mostly from luma, which 4:2:0 video keeps sharp. Returns alpha
    (P, Q), valid (P, Q) (pixels nearer this component than any other, off the pillar band
    and on the blend line) and the patch's top row and left column.
    """
    H, W = labels.shape
    rows, cols = box
    y0, x0 = max(rows.start - RING_PX, 0), max(cols.start - RING_PX, 0)
    y1, x1 = min(rows.stop + RING_PX, H), min(cols.stop + RING_PX, W)
    lab = labels[y0:y1, x0:x1]
    rgb = frame[y0:y1, x0:x1].astype(np.float64)
    own = lab == index
    near_own = _grow(own, RING_PX)
    free = ~_grow(lab > 0, RING_PX)  # background around it
    if (lab[~own] > 0).any():  # another component nearby: keep the pixels nearer to this one
        nearest = ndimage.distance_transform_edt(lab == 0, return_indices=True)[1]
        near_own &= lab[nearest[0], nearest[1]] == index
    if pillar:  # the pillar band is neither object nor background
        band = _pillar_columns(W)[2]
        in_band = (np.arange(x0, x1) >= band.start) & (np.arange(x0, x1) < band.stop)
        near_own[:, in_band] = False
        free[:, in_band] = False
    under = rgb[free] if free.sum() >= 4 else rgb[~near_own]
    base = _median(under) if len(under) else rgb.min((0, 1))
    inner = own.copy()  # eroded, with everything outside the patch counted as not own
    inner[1:] &= own[:-1]
    inner[:-1] &= own[1:]
    inner[:, 1:] &= own[:, :-1]
    inner[:, :-1] &= own[:, 1:]
    inner[[0, -1]] = inner[:, [0, -1]] = False
    inner = rgb[inner]
    ink = (_median(inner) if len(inner) >= 4 else np.asarray(COLOURS[colour])) - base
    diff = rgb - base
    y, cb, cr = _YUV @ ink  # chroma weighs in only as far as luma contrast falls short
    wc = float(np.clip((LUMA_CONTRAST**2 - y * y) / max(cb * cb + cr * cr, 1.0), 0.0, 1.0))
    g_ink = _YUV.T @ (np.asarray([1.0, wc, wc]) * (_YUV @ ink))
    alpha = diff @ g_ink / max(float(ink @ g_ink), 1.0)
    off_line = (diff * diff).sum(-1) - 2 * alpha * (diff @ ink) + alpha**2 * (ink @ ink)
    return np.clip(alpha, -0.5, 1.5), near_own & (off_line <= OFF_LINE_TOL**2), y0, x0


def _measure(
    frame: np.ndarray,
    labels: np.ndarray,
    index: int,
    box: tuple[slice, slice],
    colour: str,
    pillar: bool,
) -> tuple[Detection, float]:
    """Measure component ``index`` of ``labels`` (H, W), bounding box ``box``, in ``frame``
    (H, W, 3). Returns the detection and the shape misfit."""
    H, W = labels.shape
    rows, cols = box
    alpha, valid, y0, x0 = _coverage(frame, labels, index, box, colour, pillar)
    shape, cx, cy, h, misfit = _fit_shape(alpha, valid, y0, x0)
    area = float(np.where(valid, alpha, 0.0).sum())
    # clipped by the canvas edge if the fitted box crosses it ...
    fit = (cx - h / 2, cy - h / 2, cx + h / 2, cy + h / 2)
    edges = [
        (rows.start == 0, -fit[1]),
        (rows.stop == H, fit[3] - H),
        (cols.start == 0, -fit[0]),
        (cols.stop == W, fit[2] - W),
    ]
    tol = max(CLIP_TOL[0], CLIP_TOL[1] * h)
    touches = any(t for t, _ in edges)
    crosses = any(t and over > tol for t, over in edges)
    # ... and by the pillar (in front) if its colour reaches the column beside the band
    band = _pillar_columns(W)[2]
    if pillar and cols.stop >= band.start - RING_PX and cols.start < band.stop + RING_PX:
        touches = True
        beside = [band.start - 1, min(band.stop, W - 1)]
        crosses |= bool((labels[rows, beside] == index).any())
    sliver = area < 0.8 * _SMALLEST_AREA * H * H  # less than any whole object shows
    partial = touches and (crosses or sliver or misfit > MAX_MISFIT)
    if misfit > (MAX_PARTIAL_MISFIT if partial else MAX_MISFIT) or (partial and sliver):
        shape = None
    if partial or shape is None:  # report the visible box
        cx, cy = (cols.start + cols.stop) / 2, (rows.start + rows.stop) / 2
        h, wpx = rows.stop - rows.start, cols.stop - cols.start
    else:
        wpx = h
    det = Detection(colour, shape, cx / W, cy / H, h / H, wpx / W, area, partial)
    return det, misfit


def _split(mask: np.ndarray) -> np.ndarray | None:
    """Labels (P, Q) of the parts of a blob that erosion cuts apart, or None if it stays whole.

    Every pixel of ``mask`` goes to the part whose eroded core is nearest.
    """
    square = np.ones((3, 3), bool)
    core = mask
    for _ in range(SPLIT_ERODE):
        core = ndimage.binary_erosion(core, square)
        lab, n = ndimage.label(core, square)
        keep = np.flatnonzero(np.bincount(lab.ravel())[1:] >= MIN_AREA_PX) + 1
        if len(keep) >= 2:
            lab = np.where(np.isin(lab, keep), np.searchsorted(keep, lab) + 1, 0)
            nearest = ndimage.distance_transform_edt(lab == 0, return_indices=True)[1]
            return np.where(mask, lab[nearest[0], nearest[1]], 0)
        if n == 0:
            return None
    return None


def _absorb_fragments(labels: np.ndarray, fragment: float) -> None:
    """Relabel, in place, the codec fringes of ``labels`` (H, W) as part of their object.

    A fringe has fewer than ``fragment`` pixels or is one pixel thin, and lies within RING_PX
    of a component at least twice its size.
    """
    sizes = np.bincount(labels.ravel())
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        rows, cols = box
        thin = min(rows.stop - rows.start, cols.stop - cols.start) == 1
        if sizes[index] >= fragment and not thin:
            continue
        win = labels[
            max(rows.start - RING_PX, 0) : rows.stop + RING_PX,
            max(cols.start - RING_PX, 0) : cols.stop + RING_PX,
        ]
        near = [int(i) for i in np.unique(win) if i and sizes[i] >= 2 * sizes[index]]
        if near:
            host = max(near, key=lambda i: sizes[i])
            labels[box][labels[box] == index] = host
            sizes[host] += sizes[index]
            sizes[index] = 0


def _frame_detections(
    frame: np.ndarray, labels: np.ndarray, colours: list[int], pillar: bool
) -> list[Detection]:
    """Detections of one frame (H, W, 3) from its components ``labels`` (H, W), 1-based, whose
    colour codes are ``colours[label - 1]``."""
    H, W = labels.shape
    _absorb_fragments(labels, FRAGMENT_SHARE * _SMALLEST_AREA * H * H)
    min_area = max(MIN_AREA_PX, MIN_AREA_SHARE * _SMALLEST_AREA * H * H)
    sizes = np.bincount(labels.ravel())
    todo = [
        (i, box)
        for i, box in enumerate(ndimage.find_objects(labels), start=1)
        if box and sizes[i] >= min_area
    ]
    out = []
    while todo:
        index, box = todo.pop()
        colour = COLOUR_NAMES[colours[index - 1]]
        det, misfit = _measure(frame, labels, index, box, colour, pillar)
        parts = None if det.partial or misfit <= MAX_MISFIT else _split(labels[box] == index)
        if parts is not None:  # objects of one colour that touch: measure each
            for k, sub in enumerate(ndimage.find_objects(parts), start=1):
                colours.append(colours[index - 1])
                labels[box][parts == k] = len(colours)
                shifted = (
                    slice(b.start + s.start, b.start + s.stop)
                    for b, s in zip(box, sub, strict=True)
                )
                todo.append((len(colours), tuple(shifted)))
        elif det.area >= min_area:
            out.append(det)
    return _join_halves(out, W) if pillar else out


def _join_halves(dets: list[Detection], width: int) -> list[Detection]:
    """Join the two visible ends of an object wider than the pillar into one detection."""
    left, right, _ = _pillar_columns(width)
    lefts = [d for d in dets if d.partial and abs((d.x + d.w / 2) * width - left) <= TOUCH_PX + 1]
    out = list(dets)
    for a in lefts:
        for b in out:
            if (
                b.colour != a.colour
                or not b.partial
                or abs((b.x - b.w / 2) * width - right) > TOUCH_PX + 1
            ):
                continue
            top, bottom = max(a.y - a.h / 2, b.y - b.h / 2), min(a.y + a.h / 2, b.y + b.h / 2)
            if bottom - top < 0.5 * min(a.h, b.h):
                continue
            x0, x1 = a.x - a.w / 2, b.x + b.w / 2
            y0, y1 = min(a.y - a.h / 2, b.y - b.h / 2), max(a.y + a.h / 2, b.y + b.h / 2)
            x, y, area = (x0 + x1) / 2, (y0 + y1) / 2, a.area + b.area
            joined = Detection(a.colour, None, x, y, y1 - y0, x1 - x0, area, partial=True)
            out = [d for d in out if d is not a and d is not b] + [joined]
            break
    return out


def perceive_frames(video: np.ndarray) -> tuple[FrameView, ...]:
    """Per-frame views of ``video`` (T, H, W, 3) uint8."""
    video = np.asarray(video)
    if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3 or 0 in video.shape:
        raise ValueError(f"video: expected uint8 (T, H, W, 3), got {video.dtype} {video.shape}")
    T = len(video)
    codes = classify_pixels(video)
    backgrounds, pillar = _scene_frames(codes)
    labels = np.zeros(codes.shape, np.int32)  # per frame, components of all colours from 1
    colours: list[list[int]] = [[] for _ in range(T)]  # colour code of each frame's components
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = True  # 8-connected within a frame, never across frames
    present = np.flatnonzero(np.bincount(codes.ravel(), minlength=256)[: len(COLOUR_NAMES)])
    for c in present:
        lab, _ = ndimage.label(codes == c, structure=in_plane)
        for index, box in enumerate(ndimage.find_objects(lab), start=1):
            if box is not None:
                t = box[0].start
                colours[t].append(int(c))
                labels[box][lab[box] == index] = len(colours[t])
    views = []
    for t in range(T):
        dets = _frame_detections(video[t], labels[t], colours[t], bool(pillar[t]))
        dets.sort(key=lambda d: (d.colour, d.x, d.y))
        views.append(FrameView(backgrounds[t], bool(pillar[t]), tuple(dets)))
    return tuple(views)


def perceive_frame(frame: np.ndarray) -> FrameView:
    """What one frame ``(H, W, 3)`` uint8 shows."""
    return perceive_frames(np.asarray(frame)[None])[0]


def perceive(video: np.ndarray, fps: float = NATIVE_FPS) -> Perception:
    """Everything in ``video`` (T, H, W, 3) uint8 at ``fps``: per-frame views and tracks."""
    frames = perceive_frames(video)
    T, H, W = np.asarray(video).shape[:3]
    background = Counter(f.background for f in frames).most_common(1)[0][0]
    pillar = 2 * sum(f.pillar for f in frames) > T
    tracks = link_tracks([f.detections for f in frames], W, H, fps, pillar)
    return Perception(W, H, float(fps), background, pillar, frames, tracks)
