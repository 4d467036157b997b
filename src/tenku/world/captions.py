"""The caption grammar: several templates and synonyms for every fact, true of the video.

A caption names every object (colour, shape, motion; size often), the background, the
pillar when there is one, and sometimes where objects start and how they stand relative
to each other. Left and right are always from the viewer's point of view. Templates come
in two splits: ``train`` (used for training data) and ``paraphrase`` (kept out of
training, so a benchmark can ask in words the model never saw).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tenku.world.motion import passes_behind_pillar, scene_tracks
from tenku.world.spec import ObjectSpec, SceneSpec

COLOUR_WORDS: dict[str, tuple[str, ...]] = {
    "red": ("red",),
    "orange": ("orange",),
    "yellow": ("yellow",),
    "green": ("green",),
    "cyan": ("cyan", "aqua"),
    "blue": ("blue",),
    "purple": ("purple", "violet"),
    "pink": ("pink", "magenta"),
}
SHAPE_NOUNS: dict[str, tuple[tuple[str, str], ...]] = {  # (singular, plural)
    "circle": (("circle", "circles"), ("ball", "balls"), ("sphere", "spheres"), ("disc", "discs")),
    "square": (("square", "squares"), ("box", "boxes"), ("cube", "cubes"), ("block", "blocks")),
    "triangle": (("triangle", "triangles"), ("pyramid", "pyramids")),
    "diamond": (("diamond", "diamonds"), ("rhombus", "rhombuses")),
}
SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "small": ("small", "little", "tiny"),
    "large": ("large", "big"),
}
MOTION_VERBS: dict[str, tuple[tuple[str, str], ...]] = {  # (singular, plural)
    "still": (
        ("stays still", "stay still"),
        ("sits still", "sit still"),
        ("does not move", "do not move"),
        ("rests in place", "rest in place"),
    ),
    "left": (
        ("moves to the left", "move to the left"),
        ("slides left", "slide left"),
        ("travels to the left", "travel to the left"),
        ("drifts leftward", "drift leftward"),
    ),
    "right": (
        ("moves to the right", "move to the right"),
        ("slides right", "slide right"),
        ("travels to the right", "travel to the right"),
        ("drifts rightward", "drift rightward"),
    ),
    "up": (
        ("moves up", "move up"),
        ("rises", "rise"),
        ("floats upward", "float upward"),
        ("drifts up", "drift up"),
    ),
    "down": (
        ("moves down", "move down"),
        ("sinks", "sink"),
        ("slides downward", "slide downward"),
        ("drifts down", "drift down"),
    ),
    "fall": (
        ("falls", "fall"),
        ("falls to the floor", "fall to the floor"),
        ("drops to the ground", "drop to the ground"),
        ("falls down", "fall down"),
    ),
    "bounce": (
        ("bounces", "bounce"),
        ("bounces on the floor", "bounce on the floor"),
        ("falls and bounces", "fall and bounce"),
        ("bounces up and down", "bounce up and down"),
    ),
    "grow": (
        ("grows", "grow"),
        ("gets bigger", "get bigger"),
        ("expands", "expand"),
        ("grows larger", "grow larger"),
    ),
    "shrink": (
        ("shrinks", "shrink"),
        ("gets smaller", "get smaller"),
        ("shrinks down", "shrink down"),
        ("contracts", "contract"),
    ),
}
BACKGROUND_PHRASES: dict[str, tuple[str, ...]] = {
    "white": ("on a white background", "in a white room", "against a white backdrop"),
    "grey": ("on a grey background", "on a gray background", "in a grey room", "in a gray room"),
    "sand": ("on a sand background", "in the desert", "on sandy ground"),
    "night": ("at night", "under a night sky", "against the night sky"),
}
PILLAR_NOUNS = ("pillar", "wall", "post")
PILLAR_SENTENCES = ("A {p} stands in the middle.", "There is a {p} in the centre.")
PASSING = (" and passes behind the {p}", ", passing behind the {p}")
LAYOUT_PHRASES = {  # WORLD.md "Layout words": where the centre starts
    "left": ("on the left", "on the left side"),
    "right": ("on the right", "on the right side"),
    "top": ("at the top", "near the top"),
    "bottom": ("at the bottom", "near the bottom"),
}
RELATION_SENTENCES = {  # WORLD.md: "A is left of B" = A's centre x is smaller at the start
    "left": ("The {a} is to the left of the {b}.", "The {a} starts left of the {b}."),
    "right": ("The {a} is to the right of the {b}.", "The {a} starts right of the {b}."),
}
COUNT_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}
RELATION_MIN_DX = 0.1  # only state left/right relations that are plain to see

TEMPLATES: dict[str, tuple[str, ...]] = {
    "train": ("{objects} {bg}.", "{Bg}, {objects}.", "{objects}, {bg}."),
    "paraphrase": (
        "A video in which {objects} {bg}.",
        "In this clip, {bg}, {objects}.",
        "Watch as {objects} {bg}.",
    ),
}


class _Choices:
    """Draws words with ``rng``, or always the first option (canonical captions)."""

    def __init__(self, rng: np.random.Generator | None) -> None:
        self.rng = rng

    def pick(self, options: Sequence[str] | Sequence[tuple[str, str]]):
        return options[0] if self.rng is None else options[int(self.rng.integers(len(options)))]

    def maybe(self, p: float, canonical: bool) -> bool:
        return canonical if self.rng is None else bool(self.rng.random() < p)


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _layout(obj: ObjectSpec) -> list[str]:
    """The layout words true of where ``obj`` starts."""
    out = []
    if obj.x < 0.4:
        out.append("left")
    elif obj.x > 0.6:
        out.append("right")
    if obj.y < 0.4:
        out.append("top")
    elif obj.y > 0.6:
        out.append("bottom")
    return out


def _clauses(parts: list[str], ch: _Choices) -> str:
    if len(parts) <= 2:
        return ch.pick((" and ", ", while ")).join(parts)
    return ", ".join(parts[:-1]) + ", and " + parts[-1]


@dataclass(frozen=True)
class Caption:
    """A caption and which optional facts it states (every fact it states is true)."""

    text: str
    sizes: tuple[bool, ...]  # per object: its size word is stated
    layouts: tuple[str | None, ...]  # per object: the layout word stated (left/right/top/bottom)
    behind: tuple[bool, ...]  # per object: "passes behind the pillar" is stated
    relation: tuple[int, str, int] | None  # (a, "left" | "right", b): "a is <side> of b"


def describe(
    spec: SceneSpec, rng: np.random.Generator | None = None, split: str = "train"
) -> Caption:
    """A caption true of ``spec``'s video, with the optional facts it states.

    ``rng=None`` gives the canonical caption (first template and first synonyms, size
    and, where two objects stand apart, a left/right relation always stated), for
    reproducible prompts. Colour, shape, motion, background and pillar are always stated.
    """
    if split not in TEMPLATES:
        raise ValueError(f"split: {split!r} is not one of {sorted(TEMPLATES)}")
    ch = _Choices(rng)
    n = len(spec.objects)
    aspect = spec.width / spec.height
    pillar = ch.pick(PILLAR_NOUNS)
    behind = (
        [passes_behind_pillar(t, aspect) for t in scene_tracks(spec)]
        if spec.pillar
        else [False] * n
    )
    names: list[str] = []  # "red ball": the short name of each object, for relations
    sizes: list[bool] = []
    layouts: list[str | None] = []
    if spec.counting:
        obj = spec.objects[0]
        noun = ch.pick(SHAPE_NOUNS[obj.shape])[1 if n > 1 else 0]
        sizes = [ch.maybe(0.6, True)] * n
        size = ch.pick(SIZE_WORDS[obj.size]) + " " if sizes[0] else ""
        verb = ch.pick(MOTION_VERBS[obj.motion])[1 if n > 1 else 0]
        objects = f"{COUNT_WORDS[n]} {size}{ch.pick(COLOUR_WORDS[obj.colour])} {noun} {verb}"
        layouts = [None] * n
    else:
        parts = []
        for obj, passes in zip(spec.objects, behind, strict=True):
            colour = ch.pick(COLOUR_WORDS[obj.colour])
            noun = ch.pick(SHAPE_NOUNS[obj.shape])[0]
            names.append(f"{colour} {noun}")
            sizes.append(ch.maybe(0.6, True))
            size = ch.pick(SIZE_WORDS[obj.size]) + " " if sizes[-1] else ""
            phrase = _article(f"{size}{colour} {noun}")
            where = _layout(obj)
            layouts.append(ch.pick(where) if where and ch.maybe(0.3, False) else None)
            if layouts[-1]:
                phrase += " " + ch.pick(LAYOUT_PHRASES[layouts[-1]])
            verb = ch.pick(MOTION_VERBS[obj.motion])[0]
            if passes:
                verb += ch.pick(PASSING).format(p=pillar)
            parts.append(f"{phrase} {verb}")
        objects = _clauses(parts, ch)
    bg = ch.pick(BACKGROUND_PHRASES[spec.background])
    text = ch.pick(TEMPLATES[split]).format(objects=objects, bg=bg, Bg=bg[0].upper() + bg[1:])
    sentences = [text[0].upper() + text[1:]]
    if spec.pillar:
        sentences.append(ch.pick(PILLAR_SENTENCES).format(p=pillar))
    pairs = [
        (i, j)
        for i in range(len(names))
        for j in range(len(names))
        if i != j and abs(spec.objects[j].x - spec.objects[i].x) >= RELATION_MIN_DX
    ]
    relation = None
    if pairs and ch.maybe(0.5, True):
        i, j = ch.pick(pairs)  # canonical: the first object, against the next one apart
        relation = (i, "left" if spec.objects[i].x < spec.objects[j].x else "right", j)
        sentence = ch.pick(RELATION_SENTENCES[relation[1]])
        sentences.append(sentence.format(a=names[i], b=names[j]))
    return Caption(" ".join(sentences), tuple(sizes), tuple(layouts), tuple(behind), relation)


def caption(spec: SceneSpec, rng: np.random.Generator | None = None, split: str = "train") -> str:
    """One caption true of ``spec``'s video (see :func:`describe`)."""
    return describe(spec, rng, split).text


def captions(spec: SceneSpec, rng: np.random.Generator, n: int, split: str = "train") -> list[str]:
    """``n`` captions of ``spec`` drawn independently (they may repeat for simple scenes)."""
    return [caption(spec, rng, split) for _ in range(n)]
