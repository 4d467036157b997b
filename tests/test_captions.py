"""Every caption is true of its video, read back by an independent parser."""

from __future__ import annotations

import numpy as np
import pytest

from caption_parser import parse
from tenku.world.captions import TEMPLATES, caption
from tenku.world.rules import SIZES
from tenku.world.sample import SamplerConfig, sample_scene
from tenku.world.spec import ObjectSpec, SceneSpec

CONFIGS = [
    SamplerConfig(),
    SamplerConfig(width=112, height=64, frames=33, pillar_prob=0.6),
    SamplerConfig(width=64, height=112, counting_prob=0.4),
    SamplerConfig(width=128, height=128, frames=9, fps=4, pillar_prob=0.5),
]


def start_box(obj: ObjectSpec, end_x: float, aspect: float) -> tuple[float, float]:
    half = SIZES[obj.size] / 2 / aspect
    return end_x - half, end_x + half


def passes_behind(obj: ObjectSpec, spec: SceneSpec) -> bool:
    """Starts wholly on one side of the pillar and ends wholly on the other (WORLD.md)."""
    if obj.motion not in ("left", "right"):
        return False
    aspect = spec.width / spec.height
    seconds = (spec.frames - 1) / spec.fps
    sign = 1 if obj.motion == "right" else -1
    end_x = obj.x + sign * obj.speed * seconds / 2  # speed: canvas per 16 frames at 8 fps = 2 s
    l0, r0 = start_box(obj, obj.x, aspect)
    l1, r1 = start_box(obj, end_x, aspect)
    left, right = 0.5 - 1 / 12, 0.5 + 1 / 12
    return (r0 <= left and l1 >= right) or (l0 >= right and r1 <= left)


def check(spec: SceneSpec, text: str) -> None:
    p = parse(text)
    assert p.background == spec.background, text
    assert p.pillar == spec.pillar, text
    if spec.counting:
        assert len(p.mentions) == 1, text
        (m,) = p.mentions
        obj = spec.objects[0]
        assert m.count == len(spec.objects), text
        assert (m.colour, m.shape, m.motion) == (obj.colour, obj.shape, obj.motion), text
        assert m.size in (None, obj.size), text
        return
    assert len(p.mentions) == len(spec.objects), text
    by_colour = {o.colour: o for o in spec.objects}
    assert sorted(m.colour for m in p.mentions) == sorted(by_colour), text
    for m in p.mentions:
        obj = by_colour[m.colour]
        assert m.count == 1 and (m.shape, m.motion) == (obj.shape, obj.motion), text
        assert m.size in (None, obj.size), text
        truth = {
            "left": obj.x < 0.4,
            "right": obj.x > 0.6,
            "top": obj.y < 0.4,
            "bottom": obj.y > 0.6,
            None: True,
        }
        assert truth[m.layout], (m.layout, obj, text)
        if m.behind_pillar:
            assert passes_behind(obj, spec), text
    for a, side, b in p.relations:
        xa, xb = by_colour[a].x, by_colour[b].x
        assert (xa < xb) if side == "left" else (xa > xb), text


@pytest.mark.parametrize("split", sorted(TEMPLATES))
def test_captions_agree_with_specs(split):
    """1,000 random scenes per split, three captions each (one canonical)."""
    rng = np.random.default_rng(7)
    relations = behind = 0
    for i in range(1000):
        spec = sample_scene(rng, CONFIGS[i % len(CONFIGS)])
        for text in (caption(spec, rng, split), caption(spec, rng, split), caption(spec)):
            check(spec, text)
            p = parse(text)
            relations += len(p.relations)
            behind += sum(m.behind_pillar for m in p.mentions)
    assert relations > 100 and behind > 50  # the checks above were exercised


def test_left_right_is_viewers_point_of_view():
    spec = SceneSpec(
        objects=(
            ObjectSpec("red", "circle", "small", 0.2, 0.5, "right", speed=0.5),
            ObjectSpec("blue", "square", "small", 0.8, 0.5),
        )
    )
    text = caption(spec)
    assert "moves to the right" in text and "red circle is to the left of the blue square" in text


def test_splits_use_disjoint_templates():
    assert not set(TEMPLATES["train"]) & set(TEMPLATES["paraphrase"])
    rng = np.random.default_rng(0)
    heads = ("a video in which", "in this clip", "watch as")
    for _ in range(200):
        spec = sample_scene(rng)
        assert not caption(spec, rng, "train").lower().startswith(heads)
        assert caption(spec, rng, "paraphrase").lower().startswith(heads)


def test_captions_vary():
    rng = np.random.default_rng(1)
    spec = sample_scene(rng, SamplerConfig(counting_prob=0))
    assert len({caption(spec, rng) for _ in range(30)}) >= 8


def test_unknown_split_is_refused():
    with pytest.raises(ValueError, match="split"):
        caption(sample_scene(np.random.default_rng(0)), split="holdout")


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda v: v.update(left=v["right"], right=v["left"]),  # mirrored motion words
        lambda v: v.update(fall=v["bounce"]),  # a fall captioned as a bounce
        lambda v: v.update(grow=v["shrink"]),
    ],
)
def test_checker_catches_a_lying_grammar(monkeypatch, corrupt):
    from tenku.world import captions as grammar

    verbs = dict(grammar.MOTION_VERBS)
    corrupt(verbs)
    monkeypatch.setattr(grammar, "MOTION_VERBS", verbs)
    rng = np.random.default_rng(2)
    with pytest.raises(AssertionError):
        for _ in range(200):
            spec = sample_scene(rng)
            check(spec, caption(spec, rng))


def test_checker_catches_mirrored_relations(monkeypatch):
    from tenku.world import captions as grammar

    swapped = {
        "left": grammar.RELATION_SENTENCES["right"],
        "right": grammar.RELATION_SENTENCES["left"],
    }
    monkeypatch.setattr(grammar, "RELATION_SENTENCES", swapped)
    rng = np.random.default_rng(3)
    with pytest.raises(AssertionError):
        for _ in range(200):
            spec = sample_scene(rng)
            check(spec, caption(spec))
