"""The moderation policy: categories, thresholds, word lists and exemplars, as data.

The shipped policy is ``tenku/safety/data/policy.json``. An operator's file (passed as
``path``, or named by ``$TENKU_MODERATION_POLICY``) is laid over it, with the same shape:

.. code-block:: json

    {
      "semantic": {"enabled": true, "margin": 0.04, "classifier": true},
      "allow_terms": ["our own brand"],
      "people": ["Jane Example"],
      "brands": ["Acme Rocket"],
      "lists": {"minor": ["tween"]},
      "categories": {
        "intellectual_property": {"enabled": false},
        "violence": {"threshold": 0.7, "terms": ["skull crushing"]},
        "hate": {"exemplars": {"en": ["a poster mocking a religion"]}}
      }
    }

Scalars (``enabled``, ``threshold``, ``label``, ``margin``) replace the shipped value; lists
(``terms``, ``combos``, ``exemplars``, ``lists``, ``allow_terms``) extend it. ``people`` and
``brands`` are shortcuts that extend the ``public_figures`` and ``intellectual_property``
terms. A category the shipped policy lacks may be added (it needs a ``label``). Keys that
start with ``_`` are comments. The category order in the shipped file is the priority order:
when several categories match, the first one names the refusal.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

POLICY_ENV = "TENKU_MODERATION_POLICY"  # path of an operator's policy file
LANGUAGES = ("en", "fr")
_TOP_KEYS = {
    "version",
    "semantic",
    "allow_terms",
    "lists",
    "benign_exemplars",
    "categories",
    "people",
    "brands",
}
_CATEGORY_KEYS = {"label", "enabled", "threshold", "terms", "combos", "exemplars"}
_SHORTCUTS = {"people": "public_figures", "brands": "intellectual_property"}


@dataclass(frozen=True)
class CategoryPolicy:
    """One moderation category (hashable: every collection is a tuple)."""

    name: str  # key used in decisions and the policy file, e.g. "violence"
    label: str  # words used in messages, e.g. "graphic violence"
    enabled: bool = True  # False: never refuse for this category
    threshold: float = 0.6  # refuse at this (language-centred) cosine to the nearest exemplar
    terms: tuple[str, ...] = ()  # words or phrases that refuse on their own ("@list" expands)
    combos: tuple[tuple[str, ...], ...] = ()  # groups that refuse together: each must match
    exemplars: tuple[tuple[str, str], ...] = ()  # (language, prompt) for the semantic layer


@dataclass(frozen=True)
class Policy:
    """A complete moderation policy; build it with :func:`load_policy`."""

    categories: tuple[CategoryPolicy, ...]  # in priority order
    lists: tuple[tuple[str, tuple[str, ...]], ...] = ()  # named word lists ("@name" in terms)
    allow_terms: tuple[str, ...] = ()  # phrases removed before matching ("chicken breast")
    benign_exemplars: tuple[tuple[str, str], ...] = ()  # (language, prompt) the semantic
    # layer compares against: a category must beat the nearest of these by ``margin``
    semantic: bool = True  # False: rules only, the text encoder is never loaded
    margin: float = 0.04  # how much closer to a category than to benign exemplars
    classifier: bool = True  # False: no trained classifier after the exemplars (semantic on)
    sources: tuple[str, ...] = ()  # the files this policy was read from

    def category(self, name: str) -> CategoryPolicy:
        """The category called ``name``; ``KeyError`` lists the known ones."""
        for cat in self.categories:
            if cat.name == name:
                return cat
        known = ", ".join(c.name for c in self.categories)
        raise KeyError(f"policy: no category {name!r} (known: {known})")

    def with_category(self, name: str, **changes: Any) -> Policy:
        """A copy with category ``name`` changed, e.g. ``with_category("hate", enabled=False)``."""
        self.category(name)
        cats = tuple(
            dataclasses.replace(c, **changes) if c.name == name else c for c in self.categories
        )
        return dataclasses.replace(self, categories=cats)

    def expand(self, items: tuple[str, ...], _depth: int = 0) -> tuple[str, ...]:
        """``items`` with every ``@name`` replaced by the named list's words, or, when no list
        has that name, by the terms of the category called ``name`` (expanded in turn)."""
        if _depth > 4:
            raise ValueError(f"policy: @references nest deeper than 4 (a cycle?) in {items}")
        lists = dict(self.lists)
        out: list[str] = []
        for item in items:
            name = item[1:]
            if not item.startswith("@"):
                out.append(item)
            elif name in lists:
                out.extend(self.expand(lists[name], _depth + 1))
            elif any(c.name == name for c in self.categories):
                out.extend(self.expand(self.category(name).terms, _depth + 1))
            else:
                known = sorted(lists) + [c.name for c in self.categories]
                raise ValueError(f"policy: unknown list {item!r} (known: {known})")
        return tuple(out)


def shipped_policy_path() -> Path:
    """The policy file inside the installed package."""
    return Path(str(resources.files("tenku.safety").joinpath("data", "policy.json")))


def load_policy(path: str | os.PathLike[str] | None = None) -> Policy:
    """The shipped policy, with the operator's file laid over it.

    ``path`` defaults to ``$TENKU_MODERATION_POLICY``; with neither, the shipped policy alone.
    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` (naming the file and the
    key) for a malformed one.
    """
    base_path = shipped_policy_path()
    raw = _read(base_path)
    sources = [str(base_path)]
    path = path if path is not None else os.environ.get(POLICY_ENV) or None
    if path is not None:
        operator = Path(path)
        if not operator.is_file():
            raise FileNotFoundError(
                f"policy: {operator} does not exist (from path or ${POLICY_ENV})"
            )
        raw = _merge(raw, _read(operator), operator.name)
        sources.append(str(operator))
    return _build(raw, tuple(sources))


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"policy: {path} is not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"policy: {path} must hold a JSON object, got {type(data).__name__}")
    return data


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f"policy: {where} must be a list of non-empty strings")
    return list(value)


def _by_language(value: Any, where: str) -> dict[str, list[str]]:
    if not isinstance(value, dict):
        raise ValueError(f"policy: {where} must be an object of language -> list of prompts")
    for lang, items in value.items():
        if lang not in LANGUAGES:
            raise ValueError(f"policy: {where}.{lang}: language must be one of {LANGUAGES}")
        _strings(items, f"{where}.{lang}")
    return value


def _check_keys(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(k for k in data if k not in allowed and not k.startswith("_"))
    if unknown:
        raise ValueError(
            f"policy: {where} has unknown key(s) {unknown}; allowed: {sorted(allowed)}"
        )


def _merge(base: dict[str, Any], over: dict[str, Any], name: str) -> dict[str, Any]:
    """Lay the operator's ``over`` on ``base``: scalars replace, lists extend."""
    _check_keys(over, _TOP_KEYS, name)
    out = json.loads(json.dumps(base))  # deep copy
    cats = out.setdefault("categories", {})
    for key, cat_name in _SHORTCUTS.items():
        if key in over:
            terms = _strings(over[key], f"{name}: {key}")
            cats.setdefault(cat_name, {}).setdefault("terms", []).extend(terms)
    if "semantic" in over:
        if not isinstance(over["semantic"], dict):
            raise ValueError(f"policy: {name}: semantic must be an object")
        out.setdefault("semantic", {}).update(over["semantic"])
    if "allow_terms" in over:
        out.setdefault("allow_terms", []).extend(_strings(over["allow_terms"], "allow_terms"))
    for key in ("lists", "benign_exemplars", "categories"):
        if not isinstance(over.get(key, {}), dict):
            raise ValueError(f"policy: {name}: {key} must be an object")
    for group in ("lists", "benign_exemplars"):
        for key, items in over.get(group, {}).items():
            out.setdefault(group, {}).setdefault(key, []).extend(
                _strings(items, f"{name}: {group}.{key}")
            )
    for cat_name, changes in over.get("categories", {}).items():
        where = f"{name}: categories.{cat_name}"
        if not isinstance(changes, dict):
            raise ValueError(f"policy: {where} must be an object")
        _check_keys(changes, _CATEGORY_KEYS, where)
        cat = cats.setdefault(cat_name, {})
        for key, value in changes.items():
            if key in ("terms", "combos"):
                if not isinstance(value, list):
                    raise ValueError(f"policy: {where}.{key} must be a list")
                cat.setdefault(key, []).extend(value)
            elif key == "exemplars":
                for lang, items in _by_language(value, f"{where}.exemplars").items():
                    cat.setdefault("exemplars", {}).setdefault(lang, []).extend(items)
            else:
                cat[key] = value
    return out


def _build(raw: dict[str, Any], sources: tuple[str, ...]) -> Policy:
    """Validate the merged policy and freeze it into a :class:`Policy`."""
    where = sources[-1]
    _check_keys(raw, _TOP_KEYS, where)
    semantic = raw.get("semantic", {})
    _check_keys(semantic, {"enabled", "margin", "classifier"}, f"{where}: semantic")
    margin = semantic.get("margin", 0.04)
    if not isinstance(margin, int | float) or not -1.0 <= margin <= 1.0:
        raise ValueError(f"policy: semantic.margin must be a number in [-1, 1], got {margin!r}")
    lists = tuple(
        (name, tuple(_strings(items, f"lists.{name}")))
        for name, items in raw.get("lists", {}).items()
    )
    categories = []
    for name, spec in raw.get("categories", {}).items():
        at = f"categories.{name}"
        _check_keys(spec, _CATEGORY_KEYS, f"{where}: {at}")
        if not isinstance(spec.get("label"), str):
            raise ValueError(f"policy: {at}.label is required (the words used in messages)")
        threshold = spec.get("threshold", 0.6)
        if not isinstance(threshold, int | float) or not 0.0 <= threshold <= 1.0:
            raise ValueError(f"policy: {at}.threshold must be in [0, 1], got {threshold!r}")
        enabled = spec.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ValueError(f"policy: {at}.enabled must be true or false, got {enabled!r}")
        combos = []
        for i, combo in enumerate(spec.get("combos", [])):
            items = _strings(combo, f"{at}.combos[{i}]")
            if len(items) < 2:
                raise ValueError(f"policy: {at}.combos[{i}] needs at least 2 groups")
            combos.append(tuple(items))
        exemplars = _by_language(spec.get("exemplars", {}), f"{at}.exemplars")
        categories.append(
            CategoryPolicy(
                name=name,
                label=spec["label"],
                enabled=enabled,
                threshold=float(threshold),
                terms=tuple(_strings(spec.get("terms", []), f"{at}.terms")),
                combos=tuple(combos),
                exemplars=tuple((lang, t) for lang, items in exemplars.items() for t in items),
            )
        )
    benign = _by_language(raw.get("benign_exemplars", {}), "benign_exemplars")
    policy = Policy(
        categories=tuple(categories),
        lists=lists,
        allow_terms=tuple(_strings(raw.get("allow_terms", []), "allow_terms")),
        benign_exemplars=tuple((lang, t) for lang, items in benign.items() for t in items),
        semantic=bool(semantic.get("enabled", True)),
        margin=float(margin),
        classifier=bool(semantic.get("classifier", True)),
        sources=sources,
    )
    for cat in policy.categories:  # every "@list" must exist
        policy.expand(cat.terms)
        for combo in cat.combos:
            policy.expand(combo)
    return policy
