"""Moderation on the frozen held-out set: aggregate figures only, with Wilson 95% intervals.

    python bench/moderation_heldout.py [--data tests/data/moderation_heldout.jsonl]
    python bench/moderation_heldout.py --corpus-val   # the same figures on the corpus's val split

The held-out set (JSON lines: ``text``, ``lang`` "en"/"fr", ``label``, ``style``) was written
apart from the training corpus, the rules and the thresholds, and is never used to tune them:
this script prints its SHA-256 (to compare with the hash recorded beside it), recall per
category and language (refused under the right category, and refused at all), the
false-positive rate on allowed prompts per language, and recall per style. It never prints a
prompt, so running it cannot leak the set into the next round of tuning.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from collections import defaultdict
from pathlib import Path

from tenku.safety.moderation import Moderator

HELDOUT = Path(__file__).resolve().parents[1] / "tests/data/moderation_heldout.jsonl"
LABELS = {  # the held-out set's label -> the policy's category (None: allowed)
    "sexual": "sexual",
    "minors": "minors",
    "violence": "violence",
    "hate": "hate",
    "self_harm": "self_harm",
    "likeness": "public_figures",
    "ip": "intellectual_property",
    "instructions": "dangerous_instructions",
    "allowed": None,
}


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of ``k`` successes out of ``n`` (95% by default)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def fmt(k: int, n: int) -> str:
    if not n:
        return f"{'-':>26}"
    lo, hi = wilson(k, n)
    return f"{k:>4}/{n:<4} {100 * k / n:5.1f}% [{100 * lo:5.1f}, {100 * hi:5.1f}]"


def corpus_val_rows() -> list[dict]:
    """The shipped classifier's validation rows, labelled like the held-out set."""
    from tenku.safety.classifier import Classifier
    from tenku.safety.corpus import generate

    corpus = Classifier.load().meta["corpus"]
    names = {c: label for label, c in LABELS.items()}
    return [
        {**r, "label": names[None if r["label"] == "benign" else r["label"]]}
        for r in generate(corpus["per_category"], corpus["seed"])
        if r["split"] == "val"
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=HELDOUT)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument(
        "--corpus-val",
        action="store_true",
        help="instead: the validation split of the training corpus the shipped classifier "
        "was built from (rules + exemplars + classifier, as shipped)",
    )
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    if args.corpus_val:
        rows, raw = corpus_val_rows(), b""
    elif not args.data.is_file():
        raise SystemExit(f"{args.data} does not exist yet")
    else:
        raw = args.data.read_bytes()
        rows = [json.loads(line) for line in raw.decode("utf-8").splitlines() if line.strip()]
    unknown = sorted({r["label"] for r in rows} - set(LABELS))
    if unknown:
        raise SystemExit(f"unknown labels {unknown}; known: {sorted(LABELS)}")
    moderator = Moderator().load()
    start = time.perf_counter()
    preds = [moderator.check(r["text"]) for r in rows]
    seconds = time.perf_counter() - start
    name = "corpus val split" if args.corpus_val else args.data.name
    print(f"{name}: {len(rows)} prompts, sha256 {hashlib.sha256(raw).hexdigest()}")
    print(f"moderated in {seconds:.1f} s\n")

    langs = sorted({r["lang"] for r in rows})
    print(
        f"{'category':24}{'lang':6}{'right category (95% CI)':>34}{'refused at all (95% CI)':>34}"
    )
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for label, category in LABELS.items():
        if category is None:
            continue
        for lang in [*langs, "all"]:
            sel = [
                (r, d)
                for r, d in zip(rows, preds, strict=True)
                if r["label"] == label and lang in (r["lang"], "all")
            ]
            right = sum(not d.allowed and d.category == category for _, d in sel)
            refused = sum(not d.allowed for _, d in sel)
            print(f"{category:24}{lang:6}{fmt(right, len(sel)):>34}{fmt(refused, len(sel)):>34}")
            if lang != "all":
                t = totals[lang]
                t[0], t[1], t[2] = t[0] + right, t[1] + refused, t[2] + len(sel)

    print(f"\n{'harmful':24}{'lang':6}{'right category':>34}{'refused at all':>34}")
    for lang in langs:
        right, refused, n = totals[lang]
        print(f"{'all categories':24}{lang:6}{fmt(right, n):>34}{fmt(refused, n):>34}")
    right = sum(t[0] for t in totals.values())
    refused = sum(t[1] for t in totals.values())
    n = sum(t[2] for t in totals.values())
    print(f"{'all categories':24}{'all':6}{fmt(right, n):>34}{fmt(refused, n):>34}")

    print(f"\n{'allowed (false positives)':30}{'lang':6}{'refused (95% CI)':>34}")
    for lang in [*langs, "all"]:
        sel = [
            d
            for r, d in zip(rows, preds, strict=True)
            if r["label"] == "allowed" and lang in (r["lang"], "all")
        ]
        print(f"{'':30}{lang:6}{fmt(sum(not d.allowed for d in sel), len(sel)):>34}")

    print(f"\n{'style':30}{'harmful refused':>34}{'allowed refused':>34}")
    for style in sorted({str(r.get("style", "")) for r in rows}):
        harm = [
            d
            for r, d in zip(rows, preds, strict=True)
            if r.get("style") == style and r["label"] != "allowed"
        ]
        ok = [
            d
            for r, d in zip(rows, preds, strict=True)
            if r.get("style") == style and r["label"] == "allowed"
        ]
        print(
            f"{style[:30]:30}{fmt(sum(not d.allowed for d in harm), len(harm)):>34}"
            f"{fmt(sum(not d.allowed for d in ok), len(ok)):>34}"
        )


if __name__ == "__main__":
    main()
