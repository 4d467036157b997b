"""Prompt suites of the world benchmark: each item is a prompt and the scene it asks for.

Splits (each measures one thing a world simulator must get right):

- ``in_distribution``: scenes like the training data, canonical captions;
- ``heldout``: one object of a combination in ``holdout.json`` (never seen in training);
- ``paraphrase``: training-like scenes asked in templates kept out of training;
- ``left_right``: minimal pairs, a scene and its mirror image, prompts differing only in
  left/right words;
- ``permanence``: an object passes behind the pillar;
- ``physics``: falls and bounces;
- ``counting``: two to six identical objects;
- ``multi_object``: three objects of different colours, shapes and motions.

Every item carries its ground-truth :class:`SceneSpec`; scores are computed against the
spec, never the prompt text. Items depend only on the suite's seed, so reruns are
reproducible.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from tenku.world.captions import Caption, describe
from tenku.world.rules import BACKGROUNDS, HOLDOUT
from tenku.world.sample import SamplerConfig, sample_object, sample_scene
from tenku.world.spec import SceneSpec

SPLITS = (
    "in_distribution",
    "heldout",
    "paraphrase",
    "left_right",
    "permanence",
    "physics",
    "counting",
    "multi_object",
)
SUITES = {"quick": 4, "standard": 24, "full": 100}  # items per split


@dataclass(frozen=True)
class SuiteItem:
    """One prompt of a suite and the scene it asks for."""

    id: str  # e.g. "left_right-0003a"
    split: str  # one of SPLITS
    prompt: str
    spec: SceneSpec  # ground truth; its size, frames and fps are the requested output
    caption: Caption  # which optional facts the prompt states (size, relation, ...)
    seed: int  # the seed to generate with
    pair: str | None = None  # left_right: the id of the mirrored partner


def mirror(spec: SceneSpec) -> SceneSpec:
    """The scene seen in a mirror: x -> 1 - x, left <-> right."""
    swap = {"left": "right", "right": "left"}
    objects = tuple(
        replace(o, x=1.0 - o.x, motion=swap.get(o.motion, o.motion)) for o in spec.objects
    )
    stars = tuple((min(1.0 - x, 1.0 - 1e-9), y) for x, y in spec.stars)
    return replace(spec, objects=objects, stars=stars)


def _heldout_scene(rng: np.random.Generator, cfg: SamplerConfig, k: int) -> SceneSpec | None:
    pairs = sorted(HOLDOUT.colour_shape) + sorted(HOLDOUT.colour_motion)
    colour, other = pairs[k % len(pairs)]
    attr = {"shape": other} if k % len(pairs) < len(HOLDOUT.colour_shape) else {"motion": other}
    free = replace(cfg, exclude_holdout=False)
    got = sample_object(rng, free, colour, **attr)
    if got is None:
        return None
    background = list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))]
    return SceneSpec(
        objects=(got[0],),
        width=cfg.width,
        height=cfg.height,
        frames=cfg.frames,
        fps=cfg.fps,
        background=background,
    )


def _lr_scene(rng: np.random.Generator, cfg: SamplerConfig) -> SceneSpec:
    """A scene where left and right matter: a horizontal mover, or two objects apart."""
    cfg = replace(cfg, counting_prob=0.0)
    while True:
        if rng.random() < 0.5:
            return sample_scene(rng, replace(cfg, motions={"left": 1.0, "right": 1.0}))
        else:
            spec = sample_scene(rng, replace(cfg, object_counts={2: 1.0}))
            a, b = spec.objects
            if abs(a.x - b.x) >= 0.2:
                return spec


def _draw(split: str, cfg: SamplerConfig) -> Callable[[np.random.Generator, int], SceneSpec]:
    no_counting = replace(cfg, counting_prob=0.0)
    configs = {
        "in_distribution": cfg,
        "paraphrase": cfg,
        "permanence": replace(no_counting, pillar_prob=1.0, cross_prob=1.0, object_counts={1: 1}),
        "physics": replace(no_counting, motions={"fall": 1.0, "bounce": 1.0}, object_counts={1: 1}),
        "counting": replace(cfg, counting_prob=1.0, count_range=(2, 6)),
        "multi_object": replace(no_counting, object_counts={3: 1.0}),
    }
    if split == "heldout":
        return lambda rng, k: _heldout_scene(rng, cfg, k)
    if split == "left_right":
        return lambda rng, k: _lr_scene(rng, cfg)
    return lambda rng, k: sample_scene(rng, configs[split])


def build_suite(
    name: str = "standard",
    *,
    width: int = 128,
    height: int = 128,
    frames: int = 17,
    fps: float = 8.0,
    seed: int = 0,
    splits: tuple[str, ...] = SPLITS,
) -> list[SuiteItem]:
    """The items of suite ``name`` (``quick``, ``standard`` or ``full``) at one output shape."""
    if name not in SUITES:
        raise ValueError(f"suite: {name!r} is not one of {sorted(SUITES)}")
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown:
        raise ValueError(f"splits: {unknown} are not among {list(SPLITS)}")
    cfg = SamplerConfig(width=width, height=height, frames=frames, fps=fps)
    items: list[SuiteItem] = []
    for split in splits:
        rng = np.random.default_rng([seed, SPLITS.index(split)])
        draw = _draw(split, cfg)
        n = SUITES[name] // 2 if split == "left_right" else SUITES[name]
        k = 0
        while k < n:
            spec = draw(rng, k)
            if spec is None:
                continue
            item_seed = int(rng.integers(2**31))
            if split == "left_right":
                ids = (f"{split}-{k:04d}a", f"{split}-{k:04d}b")
                for this, other, scene in ((ids[0], ids[1], spec), (ids[1], ids[0], mirror(spec))):
                    cap = describe(scene)
                    items.append(SuiteItem(this, split, cap.text, scene, cap, item_seed, other))
            else:
                text_split = "paraphrase" if split == "paraphrase" else "train"
                cap = describe(spec, rng if split == "paraphrase" else None, text_split)
                items.append(SuiteItem(f"{split}-{k:04d}", split, cap.text, spec, cap, item_seed))
            k += 1
    return items
