"""The sandbox world obeys WORLD.md: rules data, specs, motions, pillar, palette, sampler."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from tenku.world import rules
from tenku.world.motion import object_track, scene_tracks
from tenku.world.render import render, render_with_masks
from tenku.world.sample import SamplerConfig, sample_scene
from tenku.world.spec import ObjectSpec, SceneSpec, SpecError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "world"
FLOOR_TOL = 1e-9


def scene(*objects: ObjectSpec, **kw) -> SceneSpec:
    return SceneSpec(objects=objects, **kw)


def colour_box(
    frame: np.ndarray, rgb: tuple[int, int, int], bg: str = "white"
) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) edges in pixels of the object of colour ``rgb``.

    Each pixel's coverage is read back from its colour (the blend between the background
    and ``rgb``); an edge lies inside its outermost row or column by that row's coverage.
    """
    under = np.asarray(rules.BACKGROUNDS[bg], float)
    ink = np.asarray(rgb, float) - under
    alpha = np.clip((frame - under) @ ink / (ink @ ink), 0, 1)
    rows, cols = alpha.max(1), alpha.max(0)
    ys, xs = np.flatnonzero(rows > 0.02), np.flatnonzero(cols > 0.02)
    top, bottom = ys[0] + 1 - rows[ys[0]], ys[-1] + rows[ys[-1]]
    left, right = xs[0] + 1 - cols[xs[0]], xs[-1] + cols[xs[-1]]
    return left, top, right, bottom


# --- the packaged rules are the shared ones ---------------------------------------------


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/world is not beside this checkout")
@pytest.mark.parametrize("name", ["world.json", "holdout.json"])
def test_packaged_rules_equal_shared(name):
    packaged = json.loads((Path(rules.__file__).parent / "data" / name).read_text())
    assert packaged == json.loads((SHARED / name).read_text())


def test_rules_constants_match_world_md():
    assert rules.GRAVITY == 1 / 32 and rules.RESTITUTION == 0.8 and rules.NATIVE_FPS == 8
    assert rules.SIZES == {"small": 1 / 6, "large": 1 / 4}
    assert len(rules.HOLDOUT.colour_shape) == 8 and len(rules.HOLDOUT.colour_motion) == 5


# --- specs -------------------------------------------------------------------------------


def test_spec_json_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(50):
        spec = sample_scene(rng, SamplerConfig(width=112, height=64, pillar_prob=0.5))
        assert SceneSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize(
    ("where", "change", "message"),
    [
        ("scene", {"width": 17}, "width"),
        ("scene", {"height": 0}, "height"),
        ("scene", {"frames": 0}, "frames"),
        ("scene", {"fps": -1}, "fps"),
        ("scene", {"background": "pink"}, "background"),
        ("scene", {"extra": 1}, "scene: unknown field"),
        ("object", {"colour": "black"}, "objects[0].colour"),
        ("object", {"shape": "star"}, "objects[0].shape"),
        ("object", {"motion": "fall", "y": 0.7}, "objects[0].y"),
        ("object", {"motion": "left", "speed": 3.0}, "objects[0].speed"),
        ("object", {"motion": "grow", "scale": 5.0}, "objects[0].scale"),
        ("object", {"x": 1.5}, "objects[0].x"),
        ("object", {"wobble": 1}, "objects[0]: unknown field"),
    ],
)
def test_spec_errors_name_the_field(where, change, message):
    data = scene(ObjectSpec("red", "circle", "small", 0.3, 0.3)).to_dict()
    (data if where == "scene" else data["objects"][0]).update(change)
    with pytest.raises(SpecError, match=re.escape(message)):
        SceneSpec.from_dict(data)


def test_scene_rules_enforced():
    a = ObjectSpec("red", "circle", "small", 0.3, 0.3)
    with pytest.raises(SpecError, match="colours must differ"):
        scene(a, ObjectSpec("red", "square", "small", 0.7, 0.3))
    with pytest.raises(SpecError, match="counting scene all share"):
        scene(a, ObjectSpec("red", "square", "small", 0.7, 0.3), counting=True)
    with pytest.raises(SpecError, match="1 to 3 objects"):
        scene()
    with pytest.raises(SpecError, match="stars"):
        scene(a, stars=((0.1, 0.1),))


# --- motions (positions measured in rendered pixels against WORLD.md's formulas) ----------


def world_md_path(obj: ObjectSpec, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """WORLD.md's motions written out again, independently of tenku.world.motion.

    ``t`` is in native frames. Bounce is integrated numerically (small steps, reflection
    with restitution at the floor), not from the closed form the renderer uses.
    """
    h0 = rules.SIZES[obj.size]
    x, y, h = np.full_like(t, obj.x), np.full_like(t, obj.y), np.full_like(t, h0)
    if obj.motion in ("left", "right"):
        x = obj.x + (1 if obj.motion == "right" else -1) * obj.speed * t / 16
    elif obj.motion in ("up", "down"):
        y = obj.y + (1 if obj.motion == "down" else -1) * obj.speed * t / 16
    elif obj.motion == "fall":
        y = np.minimum(obj.y + rules.GRAVITY * t**2 / 2, 1 - h0 / 2)
    elif obj.motion == "bounce":
        dt, pos, vel, now, out = 1e-3, obj.y, 0.0, 0.0, []
        for target in t:
            while now < target - 1e-12:
                step = min(dt, target - now)
                vel += rules.GRAVITY * step
                pos += vel * step
                if pos > 1 - h0 / 2:
                    pos = 1 - h0 / 2 - (pos - (1 - h0 / 2)) * rules.RESTITUTION
                    vel = -abs(vel) * rules.RESTITUTION
                now += step
            out.append(pos)
        y = np.asarray(out)
    elif obj.motion in ("grow", "shrink"):
        end = obj.scale if obj.motion == "grow" else 1 / obj.scale
        h = h0 * (1 + (end - 1) * np.minimum(t / 16, 1))
    return x, y, h


MOTION_CASES = [
    ObjectSpec("red", "square", "small", 0.5, 0.5),
    ObjectSpec("orange", "square", "small", 0.8, 0.5, "left", speed=0.5),
    ObjectSpec("yellow", "circle", "large", 0.2, 0.4, "right", speed=1.0),
    ObjectSpec("green", "square", "small", 0.5, 0.8, "up", speed=0.4),
    ObjectSpec("cyan", "circle", "small", 0.5, 0.2, "down", speed=0.7),
    ObjectSpec("blue", "square", "large", 0.4, 0.125, "fall"),
    ObjectSpec("purple", "circle", "large", 0.6, 0.2, "bounce"),
    ObjectSpec("pink", "square", "small", 0.5, 0.5, "grow", scale=2.0),
    ObjectSpec("red", "circle", "large", 0.5, 0.5, "shrink", scale=1.5),
]


@pytest.mark.parametrize("obj", MOTION_CASES, ids=lambda o: o.motion)
@pytest.mark.parametrize(("width", "height", "fps"), [(128, 128, 8), (224, 128, 8), (96, 160, 24)])
def test_motion_within_one_pixel_of_world_md(obj, width, height, fps):
    spec = scene(obj, width=width, height=height, frames=int(3 * fps), fps=fps)
    frames = render(spec)
    t = np.arange(spec.frames) * 8 / fps
    x, y, h = world_md_path(obj, t)
    rgb = rules.COLOURS[obj.colour]
    half_w, half_h = h * height / 2 / width, h / 2
    inside = (x - half_w >= 0) & (x + half_w <= 1) & (y - half_h >= 0) & (y + half_h <= 1)
    assert inside.sum() >= 8
    for i in np.flatnonzero(inside):  # frames where the object is wholly on the canvas
        left, top, right, bottom = colour_box(frames[i], rgb)
        assert abs((left + right) / 2 - x[i] * width) <= 1.0, (i, "x")
        assert abs((top + bottom) / 2 - y[i] * height) <= 1.0, (i, "y")
        assert abs((bottom - top) - h[i] * height) <= 1.0, (i, "size")


def test_gravity_drop_from_top_reaches_floor_in_8_frames():
    # WORLD.md: an object dropped from y = 0 reaches the floor in 8 frames (its centre falls 1)
    t = np.arange(9.0)
    assert rules.GRAVITY * t[-1] ** 2 / 2 == pytest.approx(1.0)


def test_bounce_apex_ratio_and_floor():
    obj = ObjectSpec("purple", "circle", "small", 0.5, 0.1, "bounce")
    fps, height = 128, 256
    spec = scene(obj, width=256, height=height, frames=fps * 5, fps=fps)
    frames = render(spec)
    boxes = np.asarray([colour_box(f, rules.COLOURS["purple"]) for f in frames])
    bottom = boxes[:, 3]
    assert bottom.max() <= height  # the floor is never crossed, in pixels
    track = object_track(obj, spec.frames, fps)
    assert (track.y + track.h / 2 <= 1 + FLOOR_TOL).all()  # nor analytically
    # apexes: local minima of the bottom edge between impacts (measured from pixels)
    top = (height - bottom) / height  # height of the bottom edge above the floor
    apex = [top[i] for i in range(1, len(top) - 1) if top[i] >= top[i - 1] and top[i] > top[i + 1]]
    apex = [a for a in apex if a > 0.02]  # bounces still many pixels high
    drop = 1 - (obj.y + obj.height / 2)
    heights = [drop, *apex]
    assert len(heights) >= 4
    ratios = np.asarray(heights[1:]) / np.asarray(heights[:-1])
    assert np.allclose(ratios, rules.RESTITUTION**2, rtol=0.05), ratios


def test_fall_rests_on_floor_without_bounce():
    obj = ObjectSpec("blue", "square", "large", 0.5, 0.2, "fall")
    spec = scene(obj, width=128, height=128, frames=64, fps=32)
    boxes = np.asarray([colour_box(f, rules.COLOURS["blue"]) for f in render(spec)])
    landed = np.flatnonzero(boxes[:, 3] == 128)
    assert landed.size and (boxes[landed[0] :, 3] == 128).all()  # stays down: no bounce
    assert np.all(np.diff(boxes[:, 1]) >= 0)  # never rises


def test_sampled_scenes_never_cross_floor_or_leave_canvas():
    rng = np.random.default_rng(3)
    for cfg in (SamplerConfig(), SamplerConfig(width=112, height=64, frames=33, fps=16)):
        for _ in range(200):
            spec = sample_scene(rng, cfg)
            for tr in scene_tracks(spec):
                box = tr.bbox(spec.width / spec.height)
                assert (box[:, 3] <= 1 + FLOOR_TOL).all() and (box[:, :2] >= -FLOOR_TOL).all()
                assert (box[:, 2] <= 1 + FLOOR_TOL).all()


def test_speed_scales_with_frame_rate():
    objs = (MOTION_CASES[1], MOTION_CASES[6], MOTION_CASES[7])
    slow = render(scene(*objs, frames=9, fps=8))
    fast = render(scene(*objs, frames=25, fps=24))
    np.testing.assert_array_equal(slow, fast[::3])  # same motion in seconds


# --- the pillar -----------------------------------------------------------------------------


def test_pillar_occludes_and_object_reappears_unchanged():
    obj = ObjectSpec("cyan", "square", "small", 0.2, 0.5, "right", speed=0.6)
    spec = scene(obj, frames=17, pillar=True, width=96, height=96)
    frames, masks = render_with_masks(spec)
    track = scene_tracks(spec)[0]
    left, right = 0.5 - 1 / 12, 0.5 + 1 / 12
    box = track.bbox(1.0)
    hidden = (box[:, 0] >= left) & (box[:, 2] <= right)
    assert hidden.any()
    rgb = np.asarray(rules.COLOURS["cyan"])
    is_obj = (np.abs(frames.astype(int) - rgb).sum(-1) < 60).reshape(len(frames), -1).sum(1)
    assert (is_obj[hidden] == 0).all() and (masks[0][hidden] == 0).all()
    before, after = is_obj[0], is_obj[-1]
    assert before > 0 and after == before  # same size, shape and colour out the other side
    cov = np.clip(
        np.minimum(np.arange(96) + 1, right * 96) - np.maximum(np.arange(96), left * 96), 0, 1
    )
    full = cov == 1
    assert (frames[:, :, full] == rules.PILLAR_RGB).all()  # drawn in front, every frame


# --- palette purity ---------------------------------------------------------------------


def saturated_bright(frames: np.ndarray) -> np.ndarray:
    f = frames.astype(np.float32) / 255
    mx, mn = f.max(-1), f.min(-1)
    sat = np.where(mx > 0, (mx - mn) / np.maximum(mx, 1e-6), 0)
    return (sat >= rules.OBJECT_MIN_SATURATION) & (mx >= rules.OBJECT_MIN_VALUE)


def test_palette_colours_are_what_world_md_says():
    for rgb in rules.COLOURS.values():
        assert saturated_bright(np.asarray([[rgb]], np.uint8)).all()
    for rgb in [*rules.BACKGROUNDS.values(), rules.PILLAR_RGB, rules.STAR_RGB]:
        assert not saturated_bright(np.asarray([[rgb]], np.uint8)).any()


@pytest.mark.parametrize(("width", "height"), [(64, 64), (128, 128), (224, 128), (64, 112)])
def test_palette_purity(width, height):
    """No saturated, bright pixel outside objects; exact colours inside and outside."""
    rng = np.random.default_rng(width + height)
    cfg = SamplerConfig(width=width, height=height, pillar_prob=0.5, counting_prob=0.2)
    for _ in range(60):
        spec = sample_scene(rng, cfg)
        frames, masks = render_with_masks(spec)
        covered = masks.sum(0) > 0
        assert not (saturated_bright(frames) & ~covered).any()
        for obj, mask in zip(spec.objects, masks, strict=True):
            inside = mask >= 1.0  # fully covered, visible pixels are exactly the colour
            assert (frames[inside] == rules.COLOURS[obj.colour]).all()
        empty = ~covered
        if spec.pillar:
            empty[
                ..., int(np.floor((0.5 - 1 / 12) * width)) : int(np.ceil((0.5 + 1 / 12) * width))
            ] = False
        bg = frames[empty]
        ok = (bg == rules.BACKGROUNDS[spec.background]).all(-1) | (bg == rules.STAR_RGB).all(-1)
        assert ok.all()
