"""Text normalisation for moderation: undo the simple tricks that hide a word from a list.

A prompt becomes a few lowercase ASCII *views* that the rule layer matches word lists against
and the semantic layer encodes. The steps, in order:

1. Unicode NFKC (full-width and ligature forms), then homoglyphs: every character the Unicode
   confusables table (``confusable-homoglyphs``) lists as a look-alike of a Latin letter becomes
   that letter (Cyrillic ``а`` -> ``a``, ``р`` -> ``p``), then ``anyascii`` transliterates the
   rest (accents: ``décapité`` -> ``decapite``).
2. Leetspeak inside words: ``n00d`` -> ``nood``, ``53x`` -> ``sex``, ``k1ll`` -> ``kill``
   (``1`` and ``|`` are tried as both ``i`` and ``l``: two views; a third keeps the digits,
   so ``12yo`` still reads as an age).
3. Punctuation inside a word is dropped (``n.u.d.e``, ``nu-de`` -> ``nude``); apostrophes and
   punctuation between words become spaces (``l'enfant`` -> ``l enfant``).
4. Runs of three or more single letters are joined (``n u d e`` -> ``nude``; a second view
   keeps a leading article apart: ``a n u d e`` -> ``a nude``; a third joins pairs too:
   ``n u`` -> ``nu``) and returned as ``runs`` so a word hidden inside a run can be searched
   without word boundaries.
5. Letters repeated three or more times are squeezed (``nuuude`` -> ``nude``, ``killll`` ->
   ``kill``): extra views.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from dataclasses import dataclass
from importlib import resources

from anyascii import anyascii

LEET = {"0": "o", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g", "@": "a", "$": "s"}
LEET_ONE = "1|!"  # read as "i" in one view and "l" in the other
LEET_CHARS = set(LEET) | set(LEET_ONE)
_WORD_CHARS = "a-z0-9@$!|"
_TOKEN = re.compile(rf"\*?[{_WORD_CHARS}]+(?:[.\-_*·•~^+=:/\\]+[{_WORD_CHARS}]+)*\*?")
_INNER_PUNCT = re.compile(r"[.\-_·•~^+=:/\\]")
_REPEATS = re.compile(r"([a-z])\1{2,}")


@dataclass(frozen=True)
class Normalized:
    """The normalised forms of one prompt."""

    text: str  # the main view: folded, leet read as "i", runs joined, single spaces
    views: tuple[str, ...]  # every view to match word lists against (text first)
    runs: tuple[str, ...]  # joined runs of >= 3 single letters ("n u d e" -> "nude")


@functools.cache
def _homoglyphs() -> dict[int, str]:
    """Code point -> the ASCII letter or digit it imitates, from the Unicode confusables table."""
    data = json.loads(
        resources.files("confusable_homoglyphs").joinpath("confusables.json").read_text("utf-8")
    )
    table: dict[int, str] = {}
    # Keys that are ASCII letters list their look-alikes; letters win over digits.
    for key in sorted(data, key=lambda k: (not k.isalpha(), k)):
        if len(key) == 1 and key.isascii() and key.isalnum():
            for glyph in data[key]:
                c = glyph["c"]
                if len(c) == 1 and not c.isascii():
                    table.setdefault(ord(c), key.lower())
    # Non-ASCII keys whose look-alikes include an ASCII letter (e.g. Cyrillic "у" -> "y").
    for key, glyphs in data.items():
        if len(key) == 1 and not key.isascii() and ord(key) not in table:
            latin = [g["c"] for g in glyphs if len(g["c"]) == 1 and g["c"].isascii()]
            letters = [c for c in latin if c.isalpha()]
            if letters or latin:
                table[ord(key)] = (letters or latin)[0].lower()
    # Keep the ordinary accented Latin letters for anyascii (é -> e, not a look-alike guess).
    for code in list(table):
        if unicodedata.category(chr(code)).startswith("L") and "LATIN" in unicodedata.name(
            chr(code), ""
        ):
            del table[code]
    return table


def fold(text: str) -> str:
    """NFKC, homoglyphs -> Latin, transliterate to ASCII, lowercase."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(_homoglyphs().get(ord(c), c) if not c.isascii() else c for c in text)
    return anyascii(text).lower()


def _deleet(token: str, one: str) -> str:
    """Read leetspeak in a token that has a letter ("n00d", "53x"); numbers stay as they are."""
    if not any(c.isalpha() for c in token):
        return token
    out = []
    for i, c in enumerate(token):
        if c in LEET:
            out.append(LEET[c])
        elif c in LEET_ONE:
            # "!" only counts as a letter inside a word ("wow!" stays "wow").
            out.append(one if c != "!" or 0 <= i < len(token) - 1 else "")
        else:
            out.append(c)
    return "".join(out)


def _tokens(folded: str, one: str | None) -> list[str]:
    """Words of ``folded``, inner punctuation dropped; ``one``: read leetspeak (None: don't)."""
    words = []
    for match in _TOKEN.finditer(folded.replace("'", " ").replace("`", " ")):
        token = match.group(0)
        token = _deleet(token, one) if one is not None else token
        token = re.sub(r"[^a-z0-9*]", "", _INNER_PUNCT.sub("", token))
        if token:
            words.append(token)
    return words


def _join_runs(
    words: list[str], one: str | None, shortest: int = 3
) -> tuple[list[str], list[str], list[str]]:
    """Join runs of >= ``shortest`` one-character words (letters, or leet digits when ``one``
    is set).

    Returns the words with runs joined, the same with a leading article kept apart ("a n u d e"
    -> "a nude"), and the runs themselves.
    """
    out: list[str] = []
    split: list[str] = []
    runs: list[str] = []
    run: list[str] = []
    for word in [*words, ""]:
        if len(word) == 1 and (word.isalpha() or (one is not None and word in LEET_CHARS)):
            run.append(word)
            continue
        if len(run) >= shortest:
            joined = "".join(run)
            joined = _deleet(joined, one) if one is not None else joined
            runs.append(joined)
            out.append(joined)
            split.extend([joined[0], joined[1:]] if len(run) >= 4 else [joined])
        else:
            out.extend(run)
            split.extend(run)
        run = []
        if word:
            out.append(word)
            split.append(word)
    return out, split, runs


def normalize(text: str) -> Normalized:
    """All the views of ``text`` that the rule layer matches (see the module docstring)."""
    folded = fold(text)
    views: list[str] = []
    runs: list[str] = []
    for one in ("i", "l", None):  # leet "1" read as "i", as "l", and leetspeak left alone
        words, split, view_runs = _join_runs(_tokens(folded, one), one)
        runs.extend(view_runs)
        view = " ".join(words)
        views.extend([view, _REPEATS.sub(r"\1", view), _REPEATS.sub(r"\1\1", view)])
        if split != words:
            views.append(" ".join(split))
        pairs, _, _ = _join_runs(_tokens(folded, one), one, shortest=2)  # "n u" -> "nu"
        if pairs != words:
            views.append(" ".join(pairs))
    unique = tuple(dict.fromkeys(views))
    return Normalized(text=unique[0], views=unique, runs=tuple(dict.fromkeys(runs)))


def normalize_term(term: str) -> str:
    """A word-list entry in the form the views use (folded; punctuation -> spaces)."""
    folded = fold(term).replace("'", " ")
    words = re.sub(r"[^a-z0-9*]+", " ", folded).split()
    return " ".join(words)


_STOPWORDS = {  # common function words: a few of them tell English from French
    "en": frozenset(
        (
            "the", "a", "an", "of", "with", "in", "on", "and", "is", "to", "at", "his", "her",
            "their", "from", "by", "into", "while",
        )
    ),
    "fr": frozenset(
        (
            "le", "la", "les", "un", "une", "des", "du", "de", "qui", "et", "dans", "sur", "avec",
            "pour", "au", "aux", "est", "sa", "son", "ses",
        )
    ),
}  # fmt: skip


def guess_language(text: str) -> str:
    """``"fr"`` or ``"en"`` by counting common function words (ties go to English)."""
    words = re.findall(r"[a-z]+", fold(text))
    counts = {lang: sum(w in stop for w in words) for lang, stop in _STOPWORDS.items()}
    return "fr" if counts["fr"] > counts["en"] else "en"
