"""An independent reader of tenku captions, for tests: English words -> world facts.

It is written from WORLD.md's caption words and plain English, not from the grammar's
tables, so a grammar bug that attaches the wrong word to a fact shows up as a mismatch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

COLOUR = {
    "red": "red",
    "orange": "orange",
    "yellow": "yellow",
    "green": "green",
    "cyan": "cyan",
    "aqua": "cyan",
    "blue": "blue",
    "purple": "purple",
    "violet": "purple",
    "pink": "pink",
    "magenta": "pink",
}
NOUN = {
    **dict.fromkeys(["circle", "ball", "sphere", "disc"], "circle"),
    **dict.fromkeys(["square", "box", "cube", "block"], "square"),
    **dict.fromkeys(["triangle", "pyramid"], "triangle"),
    **dict.fromkeys(["diamond", "rhombus"], "diamond"),
}
PLURAL = {
    ("boxes" if n == "box" else "rhombuses" if n == "rhombus" else n + "s"): s
    for n, s in NOUN.items()
}
SIZE = {"small": "small", "little": "small", "tiny": "small", "large": "large", "big": "large"}
COUNT = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6}
MOTION = [  # order matters: "falls and bounces" is a bounce
    ("bounce", r"\bbounces?\b"),
    ("still", r"\b(stays? still|sits? still|do(es)? not move|rests? in place)\b"),
    ("left", r"\b(moves?|slides?|travels?|drifts?) (to the )?left(ward)?\b"),
    ("right", r"\b(moves?|slides?|travels?|drifts?) (to the )?right(ward)?\b"),
    ("up", r"\b(moves? up|rises?|floats? upward|drifts? up)\b"),
    ("down", r"\b(moves? down|sinks?|slides? downward|drifts? down)\b"),
    ("fall", r"\b(falls?|drops?)\b"),
    ("grow", r"\b(grows?|gets? bigger|expands?)\b"),
    ("shrink", r"\b(shrinks?|gets? smaller|contracts?)\b"),
]
BACKGROUND = {
    "white": r"\bwhite (background|room|backdrop)\b",
    "grey": r"\bgr[ae]y (background|room)\b",
    "sand": r"\b(sand background|desert|sandy ground)\b",
    "night": r"\b(at night|night sky)\b",
}
PILLAR = r"\b(pillar|wall|post)\b"
LAYOUT = {
    "left": r"^\s*on the left( side)?\b",
    "right": r"^\s*on the right( side)?\b",
    "top": r"^\s*(at|near) the top\b",
    "bottom": r"^\s*(at|near) the bottom\b",
}
_WORD = "|".join
NP = re.compile(
    rf"\b({_WORD(COUNT)}) (?:({_WORD(SIZE)}) )?({_WORD(COLOUR)}) "
    rf"({_WORD(sorted([*NOUN, *PLURAL], key=len, reverse=True))})\b"
)
RELATION = re.compile(
    rf"\bthe ({_WORD(COLOUR)}) \w+ (?:is to the|starts) (left|right) of the ({_WORD(COLOUR)}) \w+"
)


@dataclass
class Mention:
    count: int
    size: str | None
    colour: str
    shape: str
    motion: str
    layout: str | None = None
    behind_pillar: bool = False


@dataclass
class Parsed:
    mentions: list[Mention] = field(default_factory=list)
    background: str | None = None
    pillar: bool = False
    relations: list[tuple[str, str, str]] = field(default_factory=list)  # (a, side, b)


def parse(caption: str) -> Parsed:
    text = caption.lower()
    out = Parsed()
    backgrounds = [b for b, pat in BACKGROUND.items() if re.search(pat, text)]
    assert len(backgrounds) == 1, f"background: {backgrounds} in {caption!r}"
    out.background = backgrounds[0]
    out.pillar = bool(re.search(PILLAR, text))
    first = text.split(". ")[0]
    nps = list(NP.finditer(first))
    for i, m in enumerate(nps):
        end = nps[i + 1].start() if i + 1 < len(nps) else len(first)
        rest = first[m.end() : end]
        for pat in BACKGROUND.values():  # the background phrase is not a motion
            rest = re.sub(pat, "", rest)
        motions = [name for name, pat in MOTION if re.search(pat, rest)]
        assert motions, f"no motion after {m.group(0)!r} in {caption!r}"
        motion = "bounce" if "bounce" in motions else motions[0]
        assert motion == "bounce" or len(motions) == 1, f"{motions} in {rest!r}"
        layout = [k for k, pat in LAYOUT.items() if re.search(pat, rest)]
        noun = m.group(4)
        out.mentions.append(
            Mention(
                count=COUNT[m.group(1)],
                size=SIZE.get(m.group(2)) if m.group(2) else None,
                colour=COLOUR[m.group(3)],
                shape=NOUN.get(noun) or PLURAL[noun],
                motion=motion,
                layout=layout[0] if layout else None,
                behind_pillar=bool(re.search(rf"\bpass(es|ing) behind the {PILLAR}", rest)),
            )
        )
    out.relations = [(COLOUR[a], side, COLOUR[b]) for a, side, b in RELATION.findall(text)]
    return out
