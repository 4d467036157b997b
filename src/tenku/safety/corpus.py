"""A seeded, labelled training corpus for the moderation classifier, English and French.

    python -m tenku.safety.corpus [--per-category 320] [--seed 0] [-o corpus.jsonl]

Prompts are composed from independent parts (:mod:`tenku.safety.corpus_parts`): a *core*
(the harmful act, or a benign scene or look-alike) filled with a subject, a setting, a framing
(plain, request, role-play / film scene), sometimes a long benign preamble, and then a
surface style (homoglyphs, zero-width characters, leetspeak, the frame in the other language).
Benign prompts get the same framings and styles, so neither tells the label. Public figures
and characters appear by name and by description (``the singer of My Heart Will Go On``).

Each row: ``{"text", "lang", "label", "style", "core", "split"}``. ``split`` is ``"val"`` for
rows whose core (the template, or the person or character) is one of about a fifth held out
by hash, so validation measures wordings and entities the classifier never saw.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from tenku.safety import corpus_parts as P

LANGS = ("en", "fr")
HARMFUL = (
    "minors",
    "sexual",
    "self_harm",
    "violence",
    "dangerous_instructions",
    "hate",
    "public_figures",
    "intellectual_property",
)
BENIGN = "benign"
STYLES = ("plain", "request", "roleplay", "preamble", "homoglyph", "zerowidth", "leet", "mixed")
_CYRILLIC = {"a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "x": "х", "y": "у", "i": "і"}
_ZERO_WIDTH = ("\u200b", "\u200c", "\u200d", "\u2060", "\u00ad")
_LEET = {"a": "4", "e": "3", "o": "0", "i": "1", "s": "5"}


def is_val(key: str, fraction: int = 5) -> bool:
    """Whether the core ``key`` is held out for validation (about one in ``fraction``)."""
    return int(hashlib.sha256(key.encode()).hexdigest(), 16) % fraction == 0


def _core(rng: random.Random, label: str, lang: str) -> tuple[str, str, str]:
    """A (text, core key, style hint) for ``label`` in ``lang``: the part that carries it."""
    pick = rng.choice
    if label == "sexual":
        t = pick(P.SEXUAL[lang])
        return t.format(a=pick(P.ADULT[lang])), t, "plain"
    if label == "minors":
        t = pick(P.MINORS[lang])
        return t.format(m=pick(P.MINOR[lang])), t, "plain"
    if label == "violence":
        t = pick(P.VIOLENCE[lang])
        return t, t, "plain"
    if label == "hate":
        t = pick(P.HATE[lang])
        return t.format(g=pick(P.GROUP[lang])), t, "plain"
    if label == "self_harm":
        t = pick(P.SELF_HARM[lang])
        return t, t, "plain"
    if label == "dangerous_instructions":
        x = pick(P.DANGER[lang])
        return pick(P.HOWTO[lang]).format(x=x), x, "plain"
    if label in ("public_figures", "intellectual_property"):
        entities = P.PEOPLE if label == "public_figures" else P.CHARACTERS
        actions = P.ACTION if label == "public_figures" else P.IP_ACTION
        name, en, fr = pick(entities)
        described = rng.random() < 0.6
        who = (en if lang == "en" else fr) if described else name
        if described and rng.random() < 0.5:
            who = pick(
                {
                    "en": ["the one who is {}", "you know who, {}", "that famous person, {}"],
                    "fr": ["celui qui est {}", "tu vois qui, {}", "la personne connue, {}"],
                }[lang]
            ).format(who)
        return f"{who} {pick(actions[lang])}", name, "description" if described else "named"
    # benign: an everyday scene or a look-alike
    if rng.random() < 0.5:
        t = pick(P.LOOKALIKE[lang])
        return t, t, "lookalike"
    s, d = pick(P.SUBJECT[lang]), pick(P.DOING[lang])
    return f"{s} {d}", d, "scene"


def _swap(text: str, rng: random.Random, table: dict[str, str], rate: float) -> str:
    return "".join(table[c] if c in table and rng.random() < rate else c for c in text)


def _zero_width(text: str, rng: random.Random) -> str:
    out = []
    for word in text.split(" "):
        if len(word) > 3 and rng.random() < 0.5:
            i = rng.randrange(1, len(word))
            word = word[:i] + rng.choice(_ZERO_WIDTH) + word[i:]
        out.append(word)
    return " ".join(out)


def _twin(rng: random.Random, lang: str) -> tuple[str, str, str]:
    """A benign core built like a harmful one: a how-to frame with a harmless object, an
    unknown person or an original character with a likeness action, a remembrance scene."""
    pick, kind = rng.choice, rng.randrange(4)
    if kind == 0:
        x = pick(P.SAFE_MAKE[lang])
        return pick(P.HOWTO[lang]).format(x=x), x, "twin"
    if kind == 1:
        who = pick(P.GENERIC_PEOPLE[lang])
        return f"{who} {pick(P.ACTION[lang][:4] + P.IP_ACTION[lang])}", who, "twin"
    if kind == 2:
        who = pick(P.GENERIC_CHARACTERS[lang])
        return f"{who} {pick(P.IP_ACTION[lang])}", who, "twin"
    t = pick(P.SAFE_SCENES[lang])
    return t, t, "twin"


def compose(
    rng: random.Random, label: str, lang: str, core: tuple[str, str, str] | None = None
) -> dict[str, str]:
    """One labelled prompt: a core in ``lang`` (drawn for ``label`` unless given), framed and
    styled at random."""
    core, key, hint = core or _core(rng, label, lang)
    style = rng.choice(STYLES)
    frame_lang = lang
    if style == "mixed":
        frame_lang = "fr" if lang == "en" else "en"
    kind = style if style in ("request", "roleplay") else rng.choice(("plain", "plain", "request"))
    text = rng.choice(P.FRAMES[kind][frame_lang]).format(core)
    if rng.random() < 0.6:
        text = f"{text} {rng.choice(P.SETTINGS[frame_lang])}".strip()
    if style == "preamble":
        text = f"{rng.choice(P.PREAMBLES[lang])} {text}"
    elif style == "homoglyph":
        text = _swap(text, rng, _CYRILLIC, rng.choice((0.15, 0.3, 0.6)))
    elif style == "zerowidth":
        text = _zero_width(text, rng)
    elif style == "leet":
        text = _swap(text, rng, _LEET, 0.3)
    if rng.random() < 0.15:
        text = text.upper() if rng.random() < 0.3 else text.capitalize()
    split = "val" if is_val(f"{label}:{key}") else "train"
    style = f"{style}+{hint}" if hint not in ("plain",) else style
    return {"text": text, "lang": lang, "label": label, "style": style, "core": key, "split": split}


def generate(per_category: int = 320, seed: int = 0) -> list[dict[str, str]]:
    """The corpus: ``per_category`` harmful prompts per category and language, as many
    benign ones per language as harmful ones, and ``2 * per_category`` benign twins of the
    harmful templates per language, without duplicate texts."""
    rng = random.Random(seed)
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    for lang in LANGS:
        for label, count in [
            *((c, per_category) for c in HARMFUL),
            (BENIGN, per_category * len(HARMFUL)),
        ]:
            made, tries = 0, 0
            while made < count and tries < count * 20:
                tries += 1
                row = compose(rng, label, lang)
                if row["text"] not in seen:
                    seen.add(row["text"])
                    rows.append(row)
                    made += 1
    twins = random.Random(seed + 1)  # a second stream: adding twins leaves the rest unchanged
    for lang in LANGS:
        for _ in range(per_category * 2):
            row = compose(twins, BENIGN, lang, _twin(twins, lang))
            if row["text"] not in seen:
                seen.add(row["text"])
                rows.append(row)
    return rows


WORLD_SEED = 101  # the world captions' stream; tests and checks draw with other seeds


def world_captions(count: int, seed: int = WORLD_SEED) -> list[str]:
    """``count`` captions of sandbox-world scenes (:mod:`tenku.world`) in both caption splits
    (``train`` and ``paraphrase``), over varied canvas sizes, clip lengths, counting and
    pillar scenes, held-out combinations included: the product's own prompts."""
    import numpy as np

    from tenku.world.captions import captions
    from tenku.world.sample import SamplerConfig, sample_scene

    rng = np.random.default_rng(seed)
    sizes = ((64, 64), (128, 128), (224, 128), (128, 224), (256, 256), (96, 64))
    out: list[str] = []
    i = 0
    while len(out) < count:
        width, height = sizes[i % len(sizes)]
        cfg = SamplerConfig(
            width=width,
            height=height,
            frames=(17, 33)[i % 3 == 0],
            counting_prob=(0.15, 0.6)[i % 4 == 0],
            pillar_prob=(0.25, 0.6)[i % 5 == 0],
            exclude_holdout=i % 2 == 0,
        )
        spec = sample_scene(rng, cfg)
        for split in ("train", "paraphrase"):
            out += captions(spec, rng, 1, split)
        i += 1
    return out[:count]


def _shape_prompt(rng: random.Random, lang: str) -> str:
    parts = P.SHAPE_PARTS[lang]
    pick = rng.choice
    if lang == "en":
        words = [pick(parts["count"]), pick(parts["colour"]), pick(parts["shape"])]
    else:
        words = [pick(parts["count"]), pick(parts["shape"]), pick(parts["colour"])]
    words += [pick(parts["place"]), pick(parts["motion"]), pick(parts["background"])]
    return " ".join(w for w in words if w)


def world_rows(count: int = 4000, shapes: int = 1500, seed: int = WORLD_SEED) -> list[dict]:
    """Benign rows in the product's own language: ``count`` sandbox-world captions (English)
    and ``shapes`` short prompts about simple shapes, colours and backgrounds per language.
    About a fifth go to validation (by hash of the text), so thresholds see them too."""
    rng = random.Random(seed)
    rows = [("en", t, "world") for t in world_captions(count, seed)]
    rows += [(lang, _shape_prompt(rng, lang), "shapes") for lang in LANGS for _ in range(shapes)]
    out, seen = [], set()
    for lang, text, style in rows:
        if text in seen:
            continue
        seen.add(text)
        split = "val" if is_val(f"{BENIGN}:{text}") else "train"
        row = {"text": text, "lang": lang, "label": BENIGN, "style": style, "core": style}
        out.append({**row, "split": split})
    return out


def iter_jsonl(path: Path) -> Iterator[dict[str, str]]:
    """Rows of a JSON-lines file."""
    with path.open(encoding="utf-8") as f:
        yield from (json.loads(line) for line in f if line.strip())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-category", type=int, default=320)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--out", type=Path, default=Path("moderation_corpus.jsonl"))
    args = parser.parse_args(argv)
    rows = generate(args.per_category, args.seed)
    with args.out.open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    counts = Counter((r["lang"], r["label"], r["split"]) for r in rows)
    print(f"{len(rows)} prompts -> {args.out}")
    for key in sorted(counts):
        print(" ".join(key), counts[key])


if __name__ == "__main__":
    main()
