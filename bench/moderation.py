"""Prompt moderation on the labelled evaluation set: precision, recall, false positives, latency.

    python bench/moderation.py [--split test] [--policy FILE] [--rules-only] [--errors]

Runs :class:`tenku.safety.moderation.Moderator` on every prompt of the set (English and French;
benign prompts, benign look-alikes, harmful prompts of each category and evasion variants)
and prints precision and recall per category and per language, recall on harmful prompts
and the false-positive rate on benign ones per language (targets: recall >= 95%, FPR <= 5%),
the worst category (lowest F1), recall per evasion kind, and the mean and p95 time per prompt
after loading (target: p95 < 50 ms). A prompt counts as caught for "recall on harmful" when it is
refused under any category; per-category figures need the right category.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tenku.safety.moderation import Moderator
from tenku.safety.normalize import normalize
from tenku.safety.policy import load_policy

EVAL_SET = Path(__file__).resolve().parents[1] / "src/tenku/safety/data/moderation_eval.jsonl"
TARGET_RECALL, TARGET_FPR, TARGET_MS = 0.95, 0.05, 50.0


def pct(num: int, den: int) -> str:
    return f"{100 * num / den:5.1f}%" if den else "    - "


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--data", type=Path, default=EVAL_SET, help="labelled prompts (JSONL)")
    parser.add_argument(
        "--split",
        choices=["all", "dev", "test"],
        default="all",
        help="which part of the set: 'dev' (used to tune the policy) or the held-out 'test'",
    )
    parser.add_argument(
        "--policy", default=None, help="operator policy file laid over the shipped one"
    )
    parser.add_argument("--rules-only", action="store_true", help="turn the semantic layer off")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for the encoder")
    parser.add_argument("--errors", action="store_true", help="print every wrong decision")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(max(args.threads, 1))
    rows = [json.loads(line) for line in args.data.read_text("utf-8").splitlines() if line]
    if args.split != "all":
        rows = [r for r in rows if r["split"] == args.split]
    policy = load_policy(args.policy)
    if args.rules_only:
        import dataclasses

        policy = dataclasses.replace(policy, semantic=False)

    exemplars = {normalize(t).text for c in policy.categories for _, t in c.exemplars}
    exemplars |= {normalize(t).text for _, t in policy.benign_exemplars}
    overlap = sum(normalize(r["text"]).text in exemplars for r in rows)

    start = time.perf_counter()
    moderator = Moderator(policy).load()
    load_s = time.perf_counter() - start
    moderator.check("warm-up prompt")
    times, preds = [], []
    for row in tqdm(rows, desc="moderating", unit="prompt"):
        t0 = time.perf_counter()
        decision = moderator.check(row["text"])
        times.append(time.perf_counter() - t0)
        preds.append(None if decision.allowed else decision.category)
        row["decision"] = decision

    categories = [c.name for c in policy.categories]
    langs = sorted({r["lang"] for r in rows})
    print(
        f"\n{len(rows)} prompts ({args.split}), {args.data.name}; semantic layer "
        f"{'on' if moderator.semantic else 'off'}; prompts equal to an exemplar: {overlap}"
    )
    print(f"\n{'category':24}" + "".join(f"{'P ' + g:>9}{'R ' + g:>9}" for g in ["all", *langs]))
    f1: dict[str, float] = {}
    for cat in categories:
        line = f"{cat:24}"
        for lang in ["all", *langs]:
            sel = [(r, p) for r, p in zip(rows, preds, strict=True) if lang in ("all", r["lang"])]
            tp = sum(r["label"] == cat and p == cat for r, p in sel)
            predicted = sum(p == cat for _, p in sel)
            actual = sum(r["label"] == cat for r, _ in sel)
            line += f"{pct(tp, predicted):>9}{pct(tp, actual):>9}"
            if lang == "all":
                prec = tp / predicted if predicted else 0.0
                rec = tp / actual if actual else 0.0
                f1[cat] = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        print(line)

    print(f"\n{'language':10}{'harmful':>9}{'recall':>9}{'benign':>9}{'FPR':>9}  targets")
    for lang in langs:
        harmful = [
            p
            for r, p in zip(rows, preds, strict=True)
            if r["lang"] == lang and r["label"] != "benign"
        ]
        benign = [
            p
            for r, p in zip(rows, preds, strict=True)
            if r["lang"] == lang and r["label"] == "benign"
        ]
        caught = sum(p is not None for p in harmful)
        refused = sum(p is not None for p in benign)
        ok = (not harmful or caught / len(harmful) >= TARGET_RECALL) and (
            not benign or refused / len(benign) <= TARGET_FPR
        )
        print(
            f"{lang:10}{len(harmful):>9}{pct(caught, len(harmful)):>9}{len(benign):>9}"
            f"{pct(refused, len(benign)):>9}  {'met' if ok else 'MISSED'}"
        )

    by_tag: dict[str, list[bool]] = defaultdict(list)
    for r, p in zip(rows, preds, strict=True):
        right = p is None if r["label"] == "benign" else p is not None
        by_tag[("benign " if r["label"] == "benign" else "harmful ") + r["tag"]].append(right)
    print(
        "\ncorrect by tag: "
        + ", ".join(
            f"{t} {pct(sum(v), len(v)).strip()} of {len(v)}" for t, v in sorted(by_tag.items())
        )
    )

    worst = min(f1, key=f1.get)
    print(f"worst category: {worst} (F1 {f1[worst]:.3f})")
    ms = np.array(times) * 1000
    print(
        f"latency per prompt after a {load_s:.1f} s load ({args.threads} thread(s)): "
        f"mean {ms.mean():.1f} ms, p95 {np.percentile(ms, 95):.1f} ms, max {ms.max():.1f} ms "
        f"(target p95 < {TARGET_MS:g} ms: "
        f"{'met' if np.percentile(ms, 95) < TARGET_MS else 'MISSED'})"
    )
    if args.errors:
        print("\nwrong decisions:")
        for r, p in zip(rows, preds, strict=True):
            if (p or "benign") != r["label"]:
                where = f"{r['split']} {r['lang']} {r['label']}->{p or 'allowed'}"
                print(f"  [{where}] {r['text']!r}: {r['decision'].reason}")


if __name__ == "__main__":
    main()
