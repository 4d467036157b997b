"""Scores of one video against the scene its prompt asked for (docs/benchmark.md).

Every metric is a number in [0, 1] (higher is better) computed from what perception sees
in the video and the ground-truth :class:`SceneSpec`, never from the prompt text; a
metric that does not apply to a scene is absent. Two rates, ``swap_rate`` and
``mirror_confusion``, are reported beside them (lower is better).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tenku.eval.perception import Perception
from tenku.eval.tracking import ObjectTrack
from tenku.world.captions import Caption
from tenku.world.motion import (
    hidden_by_pillar,
    native_times,
    object_track,
    passes_behind_pillar,
    pillar_span,
)
from tenku.world.rules import GRAVITY, MOTION_SPAN_FRAMES, RESTITUTION, SIZES, SPEED_RANGE
from tenku.world.spec import ObjectSpec, SceneSpec

METRICS = (
    "presence",
    "binding",
    "motion",
    "left_right",
    "counting",
    "permanence",
    "physics",
    "consistency",
    "background",
)
RATES = ("swap_rate", "mirror_confusion")

GRAVITY_TOL = 0.25  # relative error allowed on the fitted gravity
RESTITUTION_TOL = 0.1  # absolute error allowed on the fitted restitution
FLOOR_TOL_PX = 1.5  # how far (pixels) a bottom edge may seem to sink into the floor
FLOOR_CONTACT = 0.02  # a bottom edge this close to y = 1 (canvas fraction) touches the floor
MAX_REVERSALS = 0.45  # vertical turns per step a track may make (bounces turn; noise does not)
SIZE_TOL = 0.15  # a height names a size class within this relative error
BOUNCE_MIN = 0.03  # canvas fraction: the least fall and rise that make a bounce
SIZE_DRIFT = 1.2  # a still-sized object's whole-frame heights stay within this ratio
SHAPE_AGREEMENT = 0.8  # share of whole frames that must show the track's shape
CLEAR_PX = 2.0  # a true object this far (pixels) from the pillar is seen whole, not cut
EDGE = 0.03  # canvas fraction: an object this close to an edge may enter or leave there


@dataclass
class ItemScore:
    """Scores of one video: applicable ``metrics`` and ``rates``, and the figures behind them."""

    metrics: dict[str, float] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


def _whole(track: ObjectTrack) -> np.ndarray:
    """Indices of frames where the track is seen whole, or else seen at all."""
    idx = np.flatnonzero(track.visible & ~track.partial)
    return idx if len(idx) >= 2 else np.flatnonzero(track.visible)


def classify_motion(track: ObjectTrack, fps: float) -> str | None:
    """The world motion a track shows (one of world.json's motions), or None if unseen."""
    idx = _whole(track)
    if len(idx) < 2:
        return None
    t = native_times(len(track.x), fps)[idx]
    x, y, h = track.x[idx], track.y[idx], track.h[idx]
    span = min(t[-1] - t[0], MOTION_SPAN_FRAMES)
    if span <= 0:
        return None
    change = h[-1] / h[0]
    least_change = 1 + 0.25 * span / MOTION_SPAN_FRAMES  # half the slowest grow (1.5x in 16)
    if change >= least_change:
        return "grow"
    if change <= 1 / least_change:
        return "shrink"
    if _first_bounce(y) is not None:
        return "bounce"  # it came down and went up again: only a bounce does that
    least_move = 0.5 * SPEED_RANGE[0] * (t[-1] - t[0]) / MOTION_SPAN_FRAMES
    dx, dy = x[-1] - x[0], y[-1] - y[0]
    if abs(dx) >= least_move and abs(dx) > abs(dy):
        return "right" if dx > 0 else "left"
    if abs(dy) >= least_move:
        if dy < 0:
            return "up"
        before = y + h / 2 < 1 - FLOOR_CONTACT  # before it rests on the floor
        if before.sum() < 3:
            before[:] = True
        accel = 2 * np.polyfit(t[before], y[before], 2)[0]
        return "fall" if accel > GRAVITY / 4 else "down"
    return "still"


def _first_bounce(y: np.ndarray) -> int | None:
    """Index of the lowest sample of the first down-then-up turn of ``y`` (None if none).

    Both the descent before it and the rise after it must exceed BOUNCE_MIN.
    """
    for k in range(1, len(y) - 1):
        turns = y[k] >= y[k - 1] and y[k] > y[k + 1]
        if turns and y[k] - y[:k].min() >= BOUNCE_MIN and y[k] - y[k + 1 :].min() >= BOUNCE_MIN:
            return k
    return None


def _restitution(y: np.ndarray, h: float) -> float | None:
    """``sqrt(rise / drop)`` of the first rebound of a path ``y`` of an object of height
    ``h``, when the clip shows the rebound's apex and the descent after it."""
    turn = _first_bounce(y)
    if turn is None:
        return None
    apex = turn + 1 + int(np.argmin(y[turn + 1 :]))
    floor = 1 - h / 2
    drop, rise = floor - y[0], floor - y[apex]
    if apex < len(y) - 1 and drop > 0 and rise > 0:
        return float(np.sqrt(rise / drop))
    return None


def fit_physics(track: ObjectTrack, fps: float, height: int) -> dict[str, float | None]:
    """Fitted gravity (canvas per native frame squared) over the free fall before the first
    landing or bounce, restitution from the first rebound (``sqrt(rise / drop)``), and the
    deepest floor penetration in pixels. None where the clip does not show it."""
    idx = _whole(track)
    out: dict[str, float | None] = {"gravity": None, "restitution": None, "floor_px": None}
    if len(idx) < 3:
        return out
    t = native_times(len(track.x), fps)[idx]
    y, h = track.y[idx], track.h[idx]
    out["floor_px"] = float(max((y + h / 2).max() - 1, 0) * height)
    turn = _first_bounce(y)
    landed = np.flatnonzero(y + h / 2 >= 1 - FLOOR_CONTACT)
    end = turn if turn is not None else landed[0] if len(landed) else len(t)
    if end >= 3:  # the samples before the landing (or the bounce) are in free fall
        out["gravity"] = float(2 * np.polyfit(t[:end], y[:end], 2)[0])
    out["restitution"] = _restitution(y, float(np.median(h)))
    return out


def _main_track(p: Perception, colour: str) -> tuple[ObjectTrack | None, int]:
    """The longest-seen track of ``colour`` and how many tracks of that colour there are."""
    tracks = [tr for tr in p.tracks if tr.colour == colour]
    if not tracks:
        return None, 0
    return max(tracks, key=lambda tr: int(tr.visible.sum())), len(tracks)


def start_size(track: ObjectTrack, fps: float, changes: bool = False) -> str | None:
    """The size class of the first whole view of the track, or None if it names none.

    For an object that grows or shrinks (``changes``) only a view in the first two native
    frames tells its starting size; a later first view gives "unknown" (``"?"``).
    """
    idx = _whole(track)
    if not len(idx):
        return None
    if changes and native_times(len(track.x), fps)[idx[0]] > 2:
        return "?"
    h = track.h[idx[0]]
    size, ref = min(SIZES.items(), key=lambda kv: abs(kv[1] - h))
    return size if abs(h - ref) <= SIZE_TOL * ref else None


def _start_x(track: ObjectTrack) -> float | None:
    idx = _whole(track)
    return float(track.x[idx[0]]) if len(idx) else None


def _near_pillar_or_edge(track: ObjectTrack, t: int, aspect: float) -> bool:
    left, right = pillar_span()
    half_w = track.h[t] / 2 / aspect
    x, y = track.x[t], track.y[t]
    return bool(
        (x + half_w >= left - EDGE and x - half_w <= right + EDGE)
        or x - half_w <= EDGE
        or x + half_w >= 1 - EDGE
        or y - track.h[t] / 2 <= EDGE
    )


def appear_vanish(track: ObjectTrack, aspect: float) -> int:
    """Times the track starts, stops or blinks away from the pillar and the canvas edges."""
    seen = np.flatnonzero(track.visible)
    if not len(seen):
        return 0
    events = 0
    if seen[0] > 0 and not _near_pillar_or_edge(track, seen[0], aspect):
        events += 1  # appears from nowhere
    if seen[-1] < len(track.visible) - 1 and not _near_pillar_or_edge(track, seen[-1], aspect):
        events += 1  # vanishes
    for a, b in itertools.pairwise(seen):
        if b > a + 1 and not (
            _near_pillar_or_edge(track, a, aspect) and _near_pillar_or_edge(track, b, aspect)
        ):
            events += 1  # blinks out and back away from the pillar
    return events


def _consistent(track: ObjectTrack, p: Perception, obj: ObjectSpec | None) -> dict[str, bool]:
    """Identity checks of one track: shape and size stable, no teleport, no jitter."""
    idx = np.flatnonzero(track.visible & ~track.partial)
    shapes = [p.frames[t].detections[track.index[t]].shape for t in idx]
    stable_shape = not shapes or np.mean([s == track.shape for s in shapes]) >= SHAPE_AGREEMENT
    sized = obj is None or obj.motion not in ("grow", "shrink")
    h = track.h[idx]
    stable_size = not sized or len(h) < 2 or h.max() / h.min() <= SIZE_DRIFT
    dt = np.diff(native_times(len(track.x), p.fps)[idx])  # whole frames: partial ones show
    dx = np.diff(track.x[idx]) * p.width  # only the visible part, whose centre jumps
    dy = np.diff(track.y[idx]) * p.height
    # the fastest world motions: a translation crosses the canvas in 16 frames; a fall
    # from the top lands at 1/4 of the canvas height per frame
    no_teleport = (np.abs(dx) <= 1.5 / 16 * p.width * dt + 1.5).all() and (
        np.abs(dy) <= 0.26 * p.height * dt + 1.5
    ).all()
    return {
        "shape": bool(stable_shape),
        "size": bool(stable_size),
        "no_teleport": bool(no_teleport),
        "no_jitter": _reversals(dx) == 0 and _reversals(dy) <= MAX_REVERSALS * max(len(dy), 1),
    }


def _reversals(steps: np.ndarray) -> int:
    """How often a path turns back, counting only steps longer than a pixel."""
    moving = np.sign(steps[np.abs(steps) > 1.0])
    return int((moving[1:] != moving[:-1]).sum())


def _crossing_ok(track: ObjectTrack, obj: ObjectSpec, spec: SceneSpec, p: Perception) -> bool:
    """The object went behind the pillar and came out the far side on time, unchanged.

    On time: first seen on the far side within one frame of the true scene's first frame
    wholly out there. Unchanged: its shape, and its height within SIZE_DRIFT of before, on
    the frames where it is seen whole.
    """
    T = len(track.x)
    gt = object_track(obj, T, p.fps).bbox(p.width / p.height)
    far_left = obj.motion == "left"
    far = (gt[:, 0] < 0.5) if far_left else (gt[:, 0] > 0.5)
    came_out = np.flatnonzero(_clear_of_pillar(gt, p.width) & far)
    side = (track.x < 0.5) if far_left else (track.x > 0.5)
    seen = track.visible & (track.x == track.x)  # visible with a position
    if not len(came_out):
        return bool(seen[-1])  # still partly behind at the end: it must still be seen
    seen_out = np.flatnonzero(seen & side & (np.arange(T) >= came_out[0] - 1))
    if not len(seen_out) or seen_out[0] > came_out[0] + 1:
        return False
    whole = track.visible & ~track.partial
    after, before = np.flatnonzero(whole & side), np.flatnonzero(whole & ~side)
    shapes = [p.frames[t].detections[track.index[t]].shape for t in after]
    same_shape = not shapes or np.mean([s == obj.shape for s in shapes]) >= SHAPE_AGREEMENT
    same_size = True
    if len(after) and len(before):
        ratio = np.median(track.h[after]) / np.median(track.h[before])
        same_size = max(ratio, 1 / ratio) <= SIZE_DRIFT
    return bool(same_shape and same_size)


def _verdict(seen: str | None, wanted: str) -> str:
    """ "ok" when ``seen`` is the wanted side, "mirrored" when it is the other, else "wrong"."""
    other = {"left": "right", "right": "left"}[wanted]
    return "ok" if seen == wanted else "mirrored" if seen == other else "wrong"


def score(spec: SceneSpec, caption: Caption, p: Perception) -> ItemScore:
    """Score a perceived video against the scene ``spec`` that ``caption`` asked for."""
    out = ItemScore()
    aspect = p.width / p.height
    frames_ok = [f.background == spec.background and f.pillar == spec.pillar for f in p.frames]
    out.metrics["background"] = float(np.mean(frames_ok)) if frames_ok else 0.0
    if spec.counting:
        _score_counting(spec, p, out)
        return out

    motions, presence, binding, consistent, lasting = [], [], [], [], []
    events = 0
    tracks: dict[str, ObjectTrack | None] = {}
    lr_facts: list[str] = []  # "ok", "mirrored" or "wrong", one per left/right fact
    physics: list[bool] = []
    crossings: list[bool] = []
    for i, obj in enumerate(spec.objects):
        track, n_tracks = _main_track(p, obj.colour)
        tracks[obj.colour] = track
        present = track is not None and track.visible.mean() >= 0.5 * _gt_visible(obj, spec, p)
        presence.append(present)
        crosses = spec.pillar and passes_behind_pillar(
            object_track(obj, spec.frames, spec.fps), spec.width / spec.height
        )
        if not present or track is None:
            binding.append(False)
            motions.append((obj.motion, None))
            consistent.append(False)
            lr_facts += ["wrong"] * (
                (obj.motion in ("left", "right")) + (caption.layouts[i] in ("left", "right"))
            )
            physics += [False] * (obj.motion in ("fall", "bounce"))
            crossings += [False] * crosses
            lasting.append(False)
            continue
        seen_size = start_size(track, p.fps, obj.motion in ("grow", "shrink"))
        size_ok = not caption.sizes[i] or seen_size in (obj.size, "?")
        if _gt_seen_whole(obj, spec):  # a shape never seen whole cannot be judged
            binding.append(track.shape == obj.shape and size_ok)
        seen = classify_motion(track, p.fps)
        motions.append((obj.motion, seen))
        if obj.motion in ("left", "right"):
            lr_facts.append(_verdict(seen, obj.motion))
        if caption.layouts[i] in ("left", "right"):
            x0 = _start_x(track)
            where = None if x0 is None else "left" if x0 < 0.4 else "right" if x0 > 0.6 else None
            lr_facts.append(_verdict(where, caption.layouts[i]))
        checks = _consistent(track, p, obj)
        consistent.append(n_tracks == 1 and all(checks.values()))
        flagged = appear_vanish(track, aspect)
        events += flagged
        if obj.motion in ("fall", "bounce"):
            physics.append(_physics_ok(obj, track, p, out.details.setdefault("physics", {})))
        if crosses:
            crossings.append(_crossing_ok(track, obj, spec, p))
        lasting.append(flagged == 0 and (not crosses or crossings[-1]))
    if caption.relation is not None:
        a, side, b = caption.relation
        ta, tb = (tracks[spec.objects[k].colour] for k in (a, b))
        xa, xb = (_start_x(tr) if tr is not None else None for tr in (ta, tb))
        seen_side = None if xa is None or xb is None else "left" if xa < xb else "right"
        lr_facts.append(_verdict(seen_side, side))
    extra = sum(1 for tr in p.tracks if tr.colour not in tracks)  # objects nobody asked for
    out.metrics["presence"] = sum(presence) / (len(presence) + extra)
    if binding:
        out.metrics["binding"] = float(np.mean(binding))
    out.metrics["motion"] = float(np.mean([want == got for want, got in motions]))
    out.metrics["consistency"] = float(np.mean(consistent))
    out.metrics["permanence"] = float(np.mean(lasting))
    if physics:
        out.metrics["physics"] = float(np.mean(physics))
    if lr_facts:
        out.metrics["left_right"] = lr_facts.count("ok") / len(lr_facts)
        out.rates["mirror_confusion"] = lr_facts.count("mirrored") / len(lr_facts)
    swaps = _swap_rate(spec, tracks)
    if swaps is not None:
        out.rates["swap_rate"] = swaps
    out.details.update(
        motions={
            f"{o.colour} {o.shape}": {"asked": w, "seen": g}
            for o, (w, g) in zip(spec.objects, motions, strict=True)
        },
        extra_objects=extra,
        appear_vanish_events=events,
        crossings=crossings,
        left_right_facts=lr_facts,
    )
    return out


def applicable_metrics(spec: SceneSpec, caption: Caption) -> list[str]:
    """The metrics :func:`score` reports for this scene and prompt."""
    if spec.counting:
        return [
            "background",
            "counting",
            "presence",
            "binding",
            "motion",
            "consistency",
            "permanence",
        ]
    names = ["background", "presence", "motion", "consistency", "permanence"]
    if any(_gt_seen_whole(o, spec) for o in spec.objects):
        names.append("binding")
    if any(o.motion in ("fall", "bounce") for o in spec.objects):
        names.append("physics")
    lr = any(o.motion in ("left", "right") for o in spec.objects)
    if lr or caption.relation is not None or {"left", "right"} & set(caption.layouts):
        names.append("left_right")
    return names


def _clear_of_pillar(box: np.ndarray, width: int) -> np.ndarray:
    """(T,) True where true boxes (T, 4) stand at least CLEAR_PX clear of the pillar."""
    left, right = pillar_span()
    margin = CLEAR_PX / width
    return (box[:, 2] <= left - margin) | (box[:, 0] >= right + margin)


def _gt_seen_whole(obj: ObjectSpec, spec: SceneSpec) -> bool:
    """True when the true scene shows ``obj`` whole (clear of the pillar) in some frame."""
    if not spec.pillar:
        return True
    box = object_track(obj, spec.frames, spec.fps).bbox(spec.width / spec.height)
    return bool(_clear_of_pillar(box, spec.width).any())


def _gt_visible(obj: ObjectSpec, spec: SceneSpec, p: Perception) -> float:
    """Share of the video's frames in which ``obj`` is at least partly visible."""
    if not spec.pillar:
        return 1.0
    box = object_track(obj, len(p.frames), p.fps).bbox(p.width / p.height)
    return float(1 - hidden_by_pillar(box).mean())


def _physics_ok(obj: ObjectSpec, track: ObjectTrack, p: Perception, log: dict) -> bool:
    """Gravity within GRAVITY_TOL, no sinking into the floor, and for a bounce the
    restitution within RESTITUTION_TOL (when the clip shows the first rebound's apex)."""
    fit = fit_physics(track, p.fps, p.height)
    log[f"{obj.colour} {obj.shape}"] = fit
    g, e, floor = fit["gravity"], fit["restitution"], fit["floor_px"]
    ok = g is not None and abs(g - GRAVITY) <= GRAVITY_TOL * GRAVITY
    ok = ok and floor is not None and floor <= FLOOR_TOL_PX
    if obj.motion == "bounce" and (e is not None or _apex_in_clip(obj, len(p.frames), p.fps)):
        ok = ok and e is not None and abs(e - RESTITUTION) <= RESTITUTION_TOL
    return bool(ok)


def _apex_in_clip(obj: ObjectSpec, frames: int, fps: float) -> bool:
    """True when the clip's samples of the true path show the first rebound's apex."""
    return _restitution(object_track(obj, frames, fps).y, obj.height) is not None


def _swap_rate(spec: SceneSpec, tracks: dict[str, ObjectTrack | None]) -> float | None:
    """Share of object pairs of different shapes shown with their shapes swapped."""
    pairs = swapped = 0
    objs = spec.objects
    for i in range(len(objs)):
        for j in range(i + 1, len(objs)):
            a, b = objs[i], objs[j]
            if a.shape == b.shape:
                continue
            pairs += 1
            ta, tb = tracks.get(a.colour), tracks.get(b.colour)
            if ta is not None and tb is not None and (ta.shape, tb.shape) == (b.shape, a.shape):
                swapped += 1
    return swapped / pairs if pairs else None


def _score_counting(spec: SceneSpec, p: Perception, out: ItemScore) -> None:
    obj = spec.objects[0]
    tracks = [tr for tr in p.tracks if tr.colour == obj.colour and tr.visible.mean() >= 0.5]
    out.metrics["counting"] = float(len(tracks) == len(spec.objects))
    out.metrics["presence"] = float(len(tracks) > 0)
    out.metrics["binding"] = (
        float(np.mean([tr.shape == obj.shape for tr in tracks])) if tracks else 0.0
    )
    out.metrics["motion"] = (
        float(np.mean([classify_motion(tr, p.fps) == obj.motion for tr in tracks]))
        if tracks
        else 0.0
    )
    aspect = p.width / p.height
    out.metrics["consistency"] = (
        float(np.mean([all(_consistent(tr, p, obj).values()) for tr in tracks])) if tracks else 0.0
    )
    out.metrics["permanence"] = float(sum(appear_vanish(tr, aspect) for tr in tracks) == 0)
    out.details.update(count_asked=len(spec.objects), count_seen=len(tracks))
