"""Prompt moderation: refuse sexual content, sexualised minors, graphic violence, self-harm,
instructions for weapons, explosives or drugs, hate, real people's likeness and others'
intellectual property, offline, in English and French.

Two layers, both driven by the policy file (:mod:`tenku.safety.policy`):

1. **Rules.** The prompt is normalised (:mod:`tenku.safety.normalize`: homoglyphs, accents,
   leetspeak, spaced and punctuated letters) and matched against each category's terms and
   *combos* (groups that refuse together, e.g. a minor and a sexual cue; a how-to cue and an
   explosive). The policy's allow terms (phrases, or regular expressions that read the
   context: "a marble statue of a nude athlete", "nude colour palette") are cut out of the
   text first. Also searched: words hidden in runs of single letters (``a n u d e``) and
   words with masked letters (``n*de``).
2. **Semantics.** If no rule matched, the normalised prompt is encoded with all-MiniLM-L6-v2
   (:func:`tenku.models.text.default_text_encoder`) and compared with each category's
   exemplar prompts; it is refused when the cosine to the nearest exemplar reaches the
   category's threshold *and* beats the nearest benign exemplar by the policy's margin.
   Vectors are centred on the mean exemplar of the prompt's language (English or French,
   guessed from function words) before the cosine: MiniLM is an English model that puts
   all French sentences close together, and centring puts both languages on one scale.
3. **Classifier.** If the exemplars pass it too, :mod:`tenku.safety.classifier` decides: one
   logistic regression per category over the same MiniLM vector and character n-grams of the
   normalised prompt (trained on the seeded corpus of :mod:`tenku.safety.corpus`, thresholds
   chosen on its validation split), scored over word windows of long prompts, plus a
   nearest-neighbour match against descriptions of well-known people and characters. The
   policy's ``semantic.classifier: false`` turns it off.

The first layer needs no model; the encoder loads on the first prompt the rules let through
(or on :meth:`Moderator.load`), and never when the policy turns the semantic layer off.

>>> from tenku.safety.moderation import moderate
>>> moderate("a red ball bounces").allowed
True
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tenku.safety.classifier import windows
from tenku.safety.normalize import Normalized, guess_language, normalize, normalize_term
from tenku.safety.policy import POLICY_ENV, CategoryPolicy, Policy, load_policy

if TYPE_CHECKING:
    from tenku.models.text import TextEncoder
    from tenku.safety.classifier import Classifier

__all__ = [
    "Decision",
    "ModerationError",
    "Moderator",
    "Policy",
    "ensure_allowed",
    "get_moderator",
    "load_policy",
    "moderate",
]

MINILM = "all-MiniLM-L6-v2"  # the default encoder's name (tenku.models.text.MINILM_NAME)

_SUFFIX = "(?:s|es|x|e)?"  # plural / feminine endings every plain term also matches
_EDGE_L, _EDGE_R = "(?<![a-z0-9*])", "(?![a-z0-9*])"  # "*" is a masked letter, not a boundary
_CHUNK_WORDS, _CHUNK_STRIDE = 48, 40  # long prompts are encoded in overlapping windows


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/tenku/moderation`` (``~/.cache/tenku/moderation`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tenku" / "moderation"


@dataclass(frozen=True)
class Decision:
    """The verdict on one text."""

    allowed: bool  # False: the text is refused
    category: str | None  # the refusing category's name (e.g. "violence"); None when allowed
    reason: str  # which term or exemplar matched, and the score
    score: float  # 1.0 for a rule match, else the cosine to the nearest category exemplar


class ModerationError(ValueError):
    """A text was refused; ``decision`` says why (the message names field and category)."""

    def __init__(self, message: str, decision: Decision) -> None:
        super().__init__(message)
        self.decision = decision


def _word_pattern(word: str) -> str:
    if word.endswith("*"):
        return re.escape(word.rstrip("*")) + "[a-z0-9]*"
    return re.escape(word) + _SUFFIX


def _term_body(term: str) -> str:
    """A plain term's regular expression without the word-boundary checks."""
    words = normalize_term(term).split()
    if not words:
        raise ValueError(f"policy: term {term!r} has no letters or digits")
    return " ?".join(_word_pattern(w) for w in words)


def term_pattern(term: str) -> str:
    """The regular expression (over normalised text) that a policy term stands for."""
    if term.startswith("re:"):
        return term[3:]
    return _EDGE_L + _term_body(term) + _EDGE_R


def _compile(terms: tuple[str, ...]) -> re.Pattern[str] | None:
    """One pattern for all ``terms``: the plain ones share one pair of boundary checks."""
    terms = tuple(dict.fromkeys(terms))
    raw = [f"(?:{t[3:]})" for t in terms if t.startswith("re:")]
    plain = [_term_body(t) for t in terms if not t.startswith("re:")]
    if plain:
        raw.insert(0, _EDGE_L + "(?:" + "|".join(plain) + ")" + _EDGE_R)
    return re.compile("|".join(raw)) if raw else None


@dataclass(frozen=True)
class _Bank:
    """Exemplar embeddings for the semantic layer."""

    vectors: np.ndarray  # (N, D) unit vectors, each centred on its language's mean
    owner: np.ndarray  # (N,) index into the semantic categories; -1 = benign exemplar
    texts: list[str]  # the N exemplar prompts
    means: dict[str, np.ndarray]  # language ("en", "fr", "*" = all) -> mean vector (D,)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-8)


@dataclass(frozen=True)
class _Group:
    """One group of a combo: its terms at word boundaries, and (for runs of single letters,
    where boundaries are lost) the same terms with spaces removed."""

    pattern: re.Pattern[str]
    hidden: re.Pattern[str] | None


def _hidden(terms: tuple[str, ...], min_length: int) -> re.Pattern[str] | None:
    """Terms without spaces or ``*``, to search without word boundaries (inside runs)."""
    compact = {
        normalize_term(t).replace(" ", "").replace("*", "")
        for t in terms
        if not t.startswith("re:")
    }
    words = sorted(w for w in compact if len(w) >= min_length and w.isalpha())
    return re.compile("|".join(map(re.escape, words))) if words else None


@dataclass(frozen=True)
class _Rules:
    """One category's compiled rules."""

    category: CategoryPolicy
    terms: re.Pattern[str] | None  # any term, at word boundaries
    combos: tuple[tuple[_Group, ...], ...]  # every group must match
    hidden: re.Pattern[str] | None  # terms of >= 4 letters, spaces removed, no boundaries


def _build_rules(policy: Policy, category: CategoryPolicy) -> _Rules:
    terms = policy.expand(category.terms)
    combos = []
    for combo in category.combos:
        groups = []
        for group in combo:
            items = policy.expand((group,))
            pattern = _compile(items)
            if pattern is None:
                raise ValueError(f"policy: {category.name} combo group {group!r} is empty")
            groups.append(_Group(pattern, _hidden(items, 2)))
        combos.append(tuple(groups))
    return _Rules(category, _compile(terms), tuple(combos), _hidden(terms, 4))


def _vocabulary(policy: Policy) -> tuple[str, ...]:
    """Every word of every term and list, and every multi-word term written without spaces
    ("spiderman"), for reading masked words ("n*de" -> "nude", "sp*derm*n" -> "spiderman")."""
    items = [t for c in policy.categories for t in c.terms + tuple(x for g in c.combos for x in g)]
    items += [t for _, words in policy.lists for t in words]
    words: set[str] = set()
    for term in (normalize_term(t).replace("*", "") for t in items if not t.startswith("re:")):
        words.update(term.split())
        words.add(term.replace(" ", ""))
    return tuple(sorted(w for w in words if len(w) >= 3 and w.isalpha()))


_MASK_ENDINGS = ("", "s", "e", "es", "x", "ly", "ing", "ed")  # a masked word may be inflected


def unmask(view: str, vocabulary: tuple[str, ...], limit: int = 8) -> list[str]:
    """Views with each masked word (each ``*`` standing for one or two letters) read as a known
    word of ``vocabulary``, possibly inflected; at most ``limit`` views."""
    options: list[list[str]] = []
    for token in view.split():
        parts = token.split("*")
        if len(parts) == 1 or sum(c.isalpha() for c in token) < 2:
            options.append([token])
            continue
        pattern = re.compile("[a-z]{1,2}".join(map(re.escape, parts)))
        guesses = [
            word + end
            for word in vocabulary
            if word.startswith(parts[0])
            for end in _MASK_ENDINGS
            if pattern.fullmatch(word + end)
        ]
        # Keep the guesses closest in length: one letter per "*" before two.
        closest = min((abs(len(g) - len(token)) for g in guesses), default=0)
        guesses = sorted({g for g in guesses if abs(len(g) - len(token)) == closest})
        options.append(guesses[:limit] or [token])
    views = [""]
    for choices in options:
        views = [f"{v} {c}".strip() for v in views for c in choices][:limit]
    return views


def _match(rules: _Rules, norm: Normalized, views: tuple[str, ...]) -> str | None:
    """The reason ``rules`` refuse the prompt (which term matched), or None."""
    for view in views:
        if rules.terms is not None and (m := rules.terms.search(view)):
            return f'matched "{m.group(0)}"'
        for groups in rules.combos:
            found = [_search_group(g, view, norm.runs) for g in groups]
            if all(found):
                return "matched " + " with ".join(f'"{m.group(0)}"' for m in found if m)
    if rules.hidden is not None:
        for run in norm.runs:
            if m := rules.hidden.search(run):
                return f'matched "{m.group(0)}" hidden in "{run}"'
    return None


def _search_group(group: _Group, view: str, runs: tuple[str, ...]) -> re.Match[str] | None:
    """The group's match in ``view``, else inside one of the runs of single letters."""
    if m := group.pattern.search(view):
        return m
    if group.hidden is not None:
        for run in runs:
            if m := group.hidden.search(run):
                return m
    return None


class Moderator:
    """A policy with its rules compiled and (lazily) its exemplars encoded: reuse one.

    ``encoder`` defaults to :func:`tenku.models.text.default_text_encoder` (all-MiniLM-L6-v2),
    created on first use. The exemplar embeddings are kept in ``cache_dir`` (default
    :func:`default_cache_dir`; ``cache=False``: never read or written), one ``.npy`` per
    encoder and exemplar list, so a fresh process skips re-encoding them. Thread-safe; after
    loading, one prompt takes a few milliseconds of regular expressions plus one encoder pass.
    """

    def __init__(
        self,
        policy: Policy | None = None,
        *,
        encoder: TextEncoder | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        cache: bool = True,
    ) -> None:
        self.policy = policy if policy is not None else load_policy()
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.cache = cache
        self._allow = _compile(self.policy.allow_terms)
        self._rules = [_build_rules(self.policy, c) for c in self.policy.categories if c.enabled]
        self._vocabulary = _vocabulary(self.policy)
        self._encoder = encoder
        self._bank: _Bank | None = None
        self._lock = threading.Lock()
        names = [c.name for c in self.policy.categories if c.enabled and c.exemplars]
        self._semantic_names = names  # row labels: index into this list, -1 = benign
        self._classifier: Classifier | None = None
        self._enabled = {c.name for c in self.policy.categories if c.enabled}

    @property
    def semantic(self) -> bool:
        """Whether the semantic layer runs (the policy enables it and a category has exemplars)."""
        return self.policy.semantic and bool(self._semantic_names)

    def load(self) -> Moderator:
        """Load the encoder and encode every exemplar now (idempotent; no-op without semantics)."""
        if self.semantic:
            self._exemplar_bank()
            self._trained()
        return self

    def _trained(self) -> Classifier | None:
        """The trained classifier (:mod:`tenku.safety.classifier`), loaded once; None when the
        policy turns it off."""
        if not self.policy.classifier:
            return None
        with self._lock:
            if self._classifier is None:
                from tenku.safety.classifier import Classifier

                self._classifier = Classifier.load()
            return self._classifier

    def _encode(self, texts: list[str]) -> np.ndarray:
        """Unit sentence vectors ``(N, D)`` for already-normalised ``texts``."""
        if self._encoder is None:
            from tenku.models.text import default_text_encoder

            self._encoder = default_text_encoder()
        pooled = [self._encoder.encode(texts[i : i + 64]).pooled for i in range(0, len(texts), 64)]
        return np.concatenate([p.float().cpu().numpy() for p in pooled])

    def _cached_encode(self, texts: list[str]) -> np.ndarray:
        """``_encode(texts)`` ``(N, D)``, read from / written to the cache when it is on."""
        if not self.cache:
            return self._encode(texts)
        name = getattr(self._encoder, "name", None) if self._encoder is not None else MINILM
        if name is None:  # an encoder without a name cannot key a cache
            return self._encode(texts)
        key = hashlib.sha256("\0".join([name, *texts]).encode()).hexdigest()[:32]
        path = self.cache_dir / f"exemplars-{key}.npy"
        try:
            vectors = np.load(path)
            if vectors.shape[0] == len(texts):
                return vectors
        except (OSError, ValueError):
            pass  # missing or unreadable: encode again
        vectors = self._encode(texts)
        try:
            from tenku.io import atomic_path

            with atomic_path(path) as tmp, tmp.open("wb") as f:
                np.save(f, vectors)
        except OSError as err:
            warnings.warn(f"moderation: cannot cache exemplars in {path} ({err})", stacklevel=2)
        return vectors

    def _exemplar_bank(self) -> _Bank:
        """The encoded exemplars, centred per language (built once)."""
        with self._lock:
            if self._bank is None:
                rows = [(-1, lang, t) for lang, t in self.policy.benign_exemplars]
                for i, name in enumerate(self._semantic_names):
                    rows += [(i, lang, t) for lang, t in self.policy.category(name).exemplars]
                vectors = self._cached_encode([normalize(t).text for _, _, t in rows])
                langs = np.array([lang for _, lang, _ in rows])
                means = {lang: vectors[langs == lang].mean(axis=0) for lang in set(langs)}
                means["*"] = vectors.mean(axis=0)
                centred = _unit(vectors - np.stack([means[lang] for lang in langs]))
                owner = np.array([i for i, _, _ in rows])
                self._bank = _Bank(centred, owner, [t for _, _, t in rows], means)
            return self._bank

    def check(self, text: str) -> Decision:
        """Moderate one text: the rules first, then (if they pass it) the semantic layer."""
        if not isinstance(text, str):
            raise TypeError(f"moderation: text must be a string, got {type(text).__name__}")
        norm = normalize(text)
        if not norm.text.strip("* "):
            return Decision(True, None, "empty text", 0.0)
        views = norm.views
        if "*" in norm.text:
            views += tuple(u for v in norm.views[:1] for u in unmask(v, self._vocabulary))
        if self._allow is not None:
            views = tuple(dict.fromkeys(self._allow.sub(" , ", v) for v in views))
        for rules in self._rules:
            if reason := _match(rules, norm, views):
                return Decision(False, rules.category.name, reason, 1.0)
        if not self.semantic:
            return Decision(True, None, "no rule matched (semantic layer off)", 0.0)
        return self._semantic(norm.text)

    __call__ = check

    def _semantic(self, text: str) -> Decision:
        bank = self._exemplar_bank()
        vectors, owner, texts = bank.vectors, bank.owner, bank.texts
        words = text.split()
        chunks = [
            " ".join(words[i : i + _CHUNK_WORDS])
            for i in range(0, max(len(words) - _CHUNK_WORDS, 0) + 1, _CHUNK_STRIDE)
        ]
        mean = bank.means.get(guess_language(text), bank.means["*"])
        classifier = self._trained()
        wins = windows(text, classifier.cfg)[1:] if classifier is not None else []
        encoded = self._encode(chunks + wins)  # (C + W, D): exemplar chunks, classifier windows
        prompt = _unit(encoded[: len(chunks)] - mean)  # (C, D) centred like the exemplars
        sims = (prompt @ vectors.T).max(axis=0)  # (N,) best window per exemplar
        benign = float(sims[owner == -1].max()) if (owner == -1).any() else -1.0
        best: tuple[float, Decision] | None = None
        nearest = (0.0, "")
        for i, name in enumerate(self._semantic_names):
            rows = np.flatnonzero(owner == i)
            j = rows[int(sims[rows].argmax())]
            score, cat = float(sims[j]), self.policy.category(name)
            nearest = max(nearest, (score, name))
            if score >= cat.threshold and score - benign >= self.policy.margin:
                reason = (
                    f'close to "{texts[j]}" ({score:.2f} >= {cat.threshold:.2f}; '
                    f"nearest benign {benign:.2f})"
                )
                if best is None or score - cat.threshold > best[0]:
                    best = (score - cat.threshold, Decision(False, name, reason, score))
        if best is not None:
            return best[1]
        if classifier is not None:
            # (1 + W, D): the whole prompt (chunks[0] when it fits one chunk) and its windows
            vecs = np.concatenate(
                [self._encode([text]) if len(chunks) > 1 else encoded[:1], encoded[len(chunks) :]]
            )
            name, reason, score = classifier.decide(vecs, [text, *wins], self._enabled)
            if name is not None:
                return Decision(False, name, reason, float(score))
            return Decision(True, None, f"no rule matched; {reason}", float(score))
        score, name = nearest
        return Decision(
            True, None, f"no rule matched; nearest category {name} at {score:.2f}", score
        )


@functools.lru_cache(maxsize=8)
def _cached_moderator(policy: Policy | None, env: str | None) -> Moderator:
    return Moderator(policy if policy is not None else load_policy(env))


def get_moderator(policy: Policy | None = None) -> Moderator:
    """A shared :class:`Moderator` for ``policy`` (default: :func:`load_policy`, which reads
    ``$TENKU_MODERATION_POLICY``); built once per policy and environment value."""
    return _cached_moderator(policy, os.environ.get(POLICY_ENV) or None)


def moderate(text: str, policy: Policy | None = None) -> Decision:
    """Moderate ``text`` with the shared moderator for ``policy`` (see :class:`Moderator`)."""
    return get_moderator(policy).check(text)


def ensure_allowed(text: str, policy: Policy | None = None, *, field: str = "prompt") -> Decision:
    """Return the decision if ``text`` is allowed; else raise :class:`ModerationError`, e.g.
    ``prompt: refused (graphic violence): matched "decapitation"``."""
    moderator = get_moderator(policy)
    decision = moderator.check(text)
    if not decision.allowed:
        assert decision.category is not None
        name = moderator.policy.category(decision.category).label
        raise ModerationError(f"{field}: refused ({name}): {decision.reason}", decision)
    return decision
