"""The moderation classifier: one logistic regression per category over the frozen MiniLM
sentence vector and character n-grams of the normalised prompt, plus a nearest-neighbour check
against descriptions of well-known people and characters.

    python -m tenku.safety.classifier [--per-category 320] [--seed 0]

rebuilds ``data/classifier.npz`` and ``data/classifier.json`` from the seeded corpus
(:mod:`tenku.safety.corpus`): encode, train on the ``train`` split, choose each category's
threshold on the ``val`` split, print the validation figures and save them with the weights.

Features of one prompt (normalised by :func:`tenku.safety.normalize.normalize` first, so
homoglyphs, accents, leetspeak and zero-width characters are undone):

- ``emb``: the all-MiniLM-L6-v2 pooled unit vector ``(384,)``;
- ``char``: hashed character 2-5-grams inside word boundaries, sublinear tf x idf, unit norm
  ``(n_features,)``, which read French and obfuscated spellings the English encoder misses.

A long prompt is also scored in overlapping word windows, and each category keeps its best
window, so a long benign preamble cannot dilute a harmful request.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tenku.safety.normalize import normalize

if TYPE_CHECKING:
    from tenku.models.text import TextEncoder

WEIGHTS = "classifier.npz"
CONFIG = "classifier.json"
BANK_CATEGORIES = ("public_figures", "intellectual_property")  # nearest-neighbour descriptions


@dataclass(frozen=True)
class ClassifierConfig:
    """How features are built and the model trained (saved in ``classifier.json``)."""

    categories: tuple[str, ...]  # one logistic regression each, in priority order
    n_features: int = 2**15  # hashed character n-gram buckets
    ngram_min: int = 2  # shortest character n-gram
    ngram_max: int = 5  # longest character n-gram
    window_words: int = 24  # a prompt longer than this is also scored in windows of this size
    window_stride: int = 16  # words between window starts
    c: float = 4.0  # inverse L2 strength of each logistic regression
    emb_scale: float = 2.0  # weight of the sentence vector against the n-gram vector
    target_fpr: float = 0.005  # per-category benign false-positive rate allowed on validation
    min_threshold: float = 0.7  # no category refuses below this probability
    min_bank_threshold: float = 0.8  # nor a description match below this cosine


def windows(text: str, cfg: ClassifierConfig) -> list[str]:
    """The whole normalised ``text`` first, then its word windows when it is long."""
    words = text.split()
    out = [text]
    if len(words) > cfg.window_words:
        last = max(len(words) - cfg.window_words, 0)
        starts = [*range(0, last, cfg.window_stride), last]
        out += [" ".join(words[i : i + cfg.window_words]) for i in starts]
    return out


def _hasher(cfg: ClassifierConfig):
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(
        analyzer="char_wb",
        ngram_range=(cfg.ngram_min, cfg.ngram_max),
        n_features=cfg.n_features,
        alternate_sign=False,
        norm=None,
        lowercase=False,
    )


def char_features(texts: list[str], cfg: ClassifierConfig, idf: np.ndarray | None):
    """Sparse ``(N, n_features)``: log(1 + count) x idf, rows of unit norm."""
    from sklearn.preprocessing import normalize as l2

    counts = _hasher(cfg).transform(texts).tocsr()
    counts.data = np.log1p(counts.data)
    if idf is not None:
        counts = counts.multiply(idf.astype(np.float32)[None, :]).tocsr()
    return l2(counts)


@dataclass(frozen=True)
class Weights:
    """The trained arrays (``classifier.npz``)."""

    coef_emb: np.ndarray  # (K, 384) float32
    coef_char: np.ndarray  # (K, n_features) float16
    intercept: np.ndarray  # (K,) float32
    idf: np.ndarray  # (n_features,) float16
    bank: np.ndarray  # (M, 384) float16 unit vectors of descriptions
    bank_owner: np.ndarray  # (M,) int8 index into BANK_CATEGORIES


class Classifier:
    """Load with :meth:`load`; :meth:`scores` gives per-category probabilities."""

    def __init__(self, cfg: ClassifierConfig, weights: Weights, meta: dict) -> None:
        self.cfg, self.w, self.meta = cfg, weights, meta
        self.thresholds = np.array([meta["thresholds"][c] for c in cfg.categories])
        self.bank_thresholds = np.array([meta["bank_thresholds"][c] for c in BANK_CATEGORIES])

    @classmethod
    def load(cls, folder: str | Path | None = None) -> Classifier:
        """The shipped classifier (``tenku/safety/data``) or the one saved in ``folder``."""
        base = Path(folder) if folder else Path(str(resources.files("tenku.safety") / "data"))
        meta = json.loads((base / CONFIG).read_text("utf-8"))
        cfg = ClassifierConfig(
            **{**meta["config"], "categories": tuple(meta["config"]["categories"])}
        )
        with np.load(base / WEIGHTS) as z:
            weights = Weights(**{f.name: z[f.name] for f in dataclasses.fields(Weights)})
        return cls(cfg, weights, meta)

    def scores(self, emb: np.ndarray, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities ``(C, K)`` and description similarities ``(C, len(BANK_CATEGORIES))``
        for ``C`` windows of one prompt: their unit vectors ``emb`` ``(C, 384)`` and texts."""
        char = char_features(texts, self.cfg, self.w.idf)
        logits = (
            self.cfg.emb_scale * emb @ self.w.coef_emb.T
            + np.asarray(char @ self.w.coef_char.T.astype(np.float32))
            + self.w.intercept
        )
        sims = emb @ self.w.bank.T.astype(np.float32)  # (C, M)
        bank = np.stack(
            [sims[:, self.w.bank_owner == i].max(axis=1) for i in range(len(BANK_CATEGORIES))],
            axis=1,
        )
        return 1.0 / (1.0 + np.exp(-logits)), bank

    def decide(
        self, emb: np.ndarray, texts: list[str], enabled: set[str] | None = None
    ) -> tuple[str | None, str, float]:
        """(refusing category or None, reason, score) for one prompt's windows (the unit
        vectors ``emb`` ``(C, 384)`` and normalised texts); only ``enabled`` categories (all by
        default) refuse, the first in priority order naming the refusal."""
        probs, bank = self.scores(emb, texts)
        probs, bank = probs.max(axis=0), bank.max(axis=0)
        for k, name in enumerate(self.cfg.categories):
            if enabled is not None and name not in enabled:
                continue
            if probs[k] >= self.thresholds[k]:
                return name, f"classifier {probs[k]:.2f} >= {self.thresholds[k]:.2f}", probs[k]
            if name in BANK_CATEGORIES:
                i = BANK_CATEGORIES.index(name)
                if bank[i] >= self.bank_thresholds[i]:
                    reason = (
                        f"described like a known {'person' if i == 0 else 'character'} "
                        f"({bank[i]:.2f} >= {self.bank_thresholds[i]:.2f})"
                    )
                    return name, reason, float(bank[i])
        k = int(np.argmax(probs - self.thresholds))
        return None, f"classifier: nearest {self.cfg.categories[k]} at {probs[k]:.2f}", probs[k]


# ---- building --------------------------------------------------------------------------


def encode(encoder: TextEncoder, texts: list[str], batch: int = 128) -> np.ndarray:
    """Unit sentence vectors ``(N, 384)``."""
    out = [
        encoder.encode(texts[i : i + batch]).pooled.float().numpy()
        for i in range(0, len(texts), batch)
    ]
    return np.concatenate(out) if out else np.zeros((0, 384), np.float32)


def cached_encode(encoder: TextEncoder, texts: list[str], path: Path) -> np.ndarray:
    """:func:`encode` with a per-text cache in ``path`` (``.npz``): a changed corpus only
    encodes its new prompts (the CPU encodes about 25 prompts a second when busy)."""
    keys = [hashlib.sha1(t.encode()).hexdigest()[:16] for t in texts]
    known: dict[str, np.ndarray] = {}
    if path.is_file():
        with np.load(path) as z:
            known = dict(zip(z["keys"].tolist(), z["vectors"], strict=True))
    todo = sorted({(k, t) for k, t in zip(keys, texts, strict=True) if k not in known})
    if todo:
        import torch

        with torch.inference_mode():
            new = encode(encoder, [t for _, t in todo])
        known.update(zip([k for k, _ in todo], new, strict=True))
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, keys=np.array(list(known)), vectors=np.stack(list(known.values())))
    return np.stack([known[k] for k in keys]).astype(np.float32)


def descriptions() -> list[tuple[int, str]]:
    """(bank category index, normalised description) for every listed person and character."""
    from tenku.safety import corpus_parts as P

    rows = []
    for i, entities in enumerate((P.PEOPLE, P.CHARACTERS)):
        rows += [(i, normalize(d).text) for _, en, fr in entities for d in (en, fr)]
    return rows


def extra_rows() -> list[dict[str, str]]:
    """Training rows beyond the generated corpus: the policy's exemplars (benign and per
    category) and the ``dev`` half of the shipped evaluation set (its ``test`` half stays out,
    so ``bench/moderation.py --split test`` still measures prompts the classifier never saw)."""
    from tenku.safety.policy import load_policy, shipped_policy_path

    policy = load_policy(shipped_policy_path())
    rows = [(lang, "benign", t, "policy-exemplar") for lang, t in policy.benign_exemplars]
    rows += [
        (lang, c.name, t, "policy-exemplar") for c in policy.categories for lang, t in c.exemplars
    ]
    evalset = resources.files("tenku.safety").joinpath("data", "moderation_eval.jsonl")
    for line in evalset.read_text("utf-8").splitlines():
        r = json.loads(line)
        if r["split"] == "dev":
            rows.append((r["lang"], r["label"], r["text"], "eval-dev"))
    return [
        {"text": t, "lang": lang, "label": label, "style": style, "core": style, "split": "train"}
        for lang, label, t, style in rows
    ]


def _pick_threshold(pos: np.ndarray, neg: np.ndarray, cfg: ClassifierConfig) -> float:
    """The lowest threshold whose false-positive rate on ``neg`` is within ``target_fpr``."""
    allowed = int(np.floor(cfg.target_fpr * len(neg)))
    ranked = np.sort(neg)[::-1]
    t = ranked[allowed] + 1e-4 if allowed < len(ranked) else 0.0
    return float(max(t, cfg.min_threshold))


def build(
    per_category: int = 320, seed: int = 0, out: Path | None = None, **options: float
) -> dict:
    """Generate the corpus, train, choose thresholds, save; returns the saved metadata.
    ``options`` override :class:`ClassifierConfig` fields (``c``, ``emb_scale``...)."""
    import scipy.sparse as sp
    import torch
    from sklearn.linear_model import LogisticRegression

    from tenku.models.text import default_text_encoder
    from tenku.safety.corpus import HARMFUL, generate, world_rows

    torch.set_num_threads(max(torch.get_num_threads(), 1))
    start = time.time()
    rows = generate(per_category, seed) + world_rows() + extra_rows()
    cfg = ClassifierConfig(categories=HARMFUL, **options)
    texts = [normalize(r["text"]).text for r in rows]
    encoder = default_text_encoder()
    from tenku.safety.moderation import default_cache_dir

    cache = default_cache_dir() / "corpus-vectors.npz"
    emb = cached_encode(encoder, texts, cache)
    print(f"encoded {len(rows)} prompts in {time.time() - start:.0f} s")
    train = np.array([r["split"] == "train" for r in rows])
    labels = np.array([r["label"] for r in rows])

    counts = _hasher(cfg).transform([t for t, m in zip(texts, train, strict=True) if m])
    df = np.bincount(counts.nonzero()[1], minlength=cfg.n_features)
    idf = np.log((1 + train.sum()) / (1 + df)) + 1.0
    x = sp.hstack([sp.csr_matrix(cfg.emb_scale * emb), char_features(texts, cfg, idf)]).tocsr()
    k, d = len(cfg.categories), emb.shape[1]
    coef, intercept = np.zeros((k, x.shape[1]), np.float32), np.zeros(k, np.float32)
    for i, name in enumerate(cfg.categories):
        y = labels == name
        if name == "sexual":
            y |= labels == "minors"  # sexualised minors are sexual too; minors names them first
        model = LogisticRegression(C=cfg.c, solver="liblinear", class_weight="balanced")
        model.fit(x[train], y[train])
        coef[i], intercept[i] = model.coef_[0], model.intercept_[0]

    bank_rows = descriptions()
    with torch.inference_mode():
        bank = encode(encoder, [t for _, t in bank_rows])
    weights = Weights(
        coef_emb=coef[:, :d] * 1.0,
        coef_char=coef[:, d:].astype(np.float16),
        intercept=intercept,
        idf=idf.astype(np.float16),
        bank=bank.astype(np.float16),
        bank_owner=np.array([i for i, _ in bank_rows], np.int8),
    )
    meta = {"config": dataclasses.asdict(cfg), "thresholds": {}, "bank_thresholds": {}}
    clf = Classifier(
        cfg,
        weights,
        {
            "thresholds": dict.fromkeys(cfg.categories, 1.0),
            "bank_thresholds": dict.fromkeys(BANK_CATEGORIES, 1.0),
        },
    )
    val = np.flatnonzero(~train)
    probs, sims = _score_rows(clf, encoder, [texts[i] for i in val], emb[val], cache)
    benign = labels[val] == "benign"
    for i, name in enumerate(cfg.categories):
        meta["thresholds"][name] = _pick_threshold(probs[~benign, i], probs[benign, i], cfg)
    for i, name in enumerate(BANK_CATEGORIES):
        meta["bank_thresholds"][name] = max(
            _pick_threshold(sims[~benign, i], sims[benign, i], cfg), cfg.min_bank_threshold
        )
    clf = Classifier(cfg, weights, meta)
    meta["validation"] = validate(clf, [rows[i] for i in val], probs, sims)
    corpus = "\n".join(json.dumps(r, sort_keys=True) for r in rows)
    meta["corpus"] = {
        "per_category": per_category,
        "seed": seed,
        "rows": len(rows),
        "sha256": hashlib.sha256(corpus.encode()).hexdigest(),
    }
    folder = out or Path(str(resources.files("tenku.safety") / "data"))
    np.savez_compressed(folder / WEIGHTS, **dataclasses.asdict(weights))
    (folder / CONFIG).write_text(json.dumps(meta, indent=1) + "\n", "utf-8")
    print(f"saved {folder / WEIGHTS} in {time.time() - start:.0f} s")
    return meta


def _score_rows(clf: Classifier, encoder, texts: list[str], emb: np.ndarray, cache: Path):
    """Max-over-windows probabilities ``(N, K)`` and description similarities ``(N, 2)``."""
    probs, sims = [], []
    for text, vec in zip(texts, emb, strict=True):
        wins = windows(text, clf.cfg)
        vecs = vec[None]
        if len(wins) > 1:
            vecs = np.concatenate([vecs, cached_encode(encoder, wins[1:], cache)])
        p, s = clf.scores(vecs, wins)
        probs.append(p.max(axis=0))
        sims.append(s.max(axis=0))
    return np.array(probs), np.array(sims)


def validate(clf: Classifier, rows: list[dict], probs: np.ndarray, sims: np.ndarray) -> dict:
    """Recall per category and language (right category / refused at all), false positives."""
    cats = clf.cfg.categories
    preds = []
    for p, s in zip(probs, sims, strict=True):
        pred = None
        for k, name in enumerate(cats):
            hit = p[k] >= clf.thresholds[k]
            if name in BANK_CATEGORIES:
                i = BANK_CATEGORIES.index(name)
                hit = hit or s[i] >= clf.bank_thresholds[i]
            if hit:
                pred = name
                break
        preds.append(pred)
    report: dict[str, dict] = {}
    for lang in ("en", "fr"):
        sel = [(r, p) for r, p in zip(rows, preds, strict=True) if r["lang"] == lang]
        for name in [*cats, "benign"]:
            rs = [(r, p) for r, p in sel if r["label"] == name]
            if name == "benign":
                report[f"{lang}/benign"] = {
                    "n": len(rs),
                    "refused": sum(p is not None for _, p in rs),
                }
            else:
                report[f"{lang}/{name}"] = {
                    "n": len(rs),
                    "right": sum(p == name for _, p in rs),
                    "refused": sum(p is not None for _, p in rs),
                }
        desc = [(r, p) for r, p in sel if r["style"].endswith("+description")]
        report[f"{lang}/described"] = {
            "n": len(desc),
            "right": sum(p == r["label"] for r, p in desc),
        }
    for key, v in report.items():
        line = f"{key:32} n={v['n']:4}"
        if "right" in v:
            line += f" right {v['right'] / max(v['n'], 1):6.1%}"
        if "refused" in v:
            line += f" refused {v['refused'] / max(v['n'], 1):6.1%}"
        print(line)
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-category", type=int, default=320)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="folder (default: shipped data)")
    args = parser.parse_args(argv)
    build(args.per_category, args.seed, args.out)


if __name__ == "__main__":
    main()
