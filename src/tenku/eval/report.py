"""The benchmark report: results.json, summary.md and PNG plots.

- ``results.json``: every figure (summary, normalised scores, per-item metrics and details);
- ``summary.md``: a metric x split table, overall and normalised scores, motion by type;
- ``metrics.png``: bars per metric, one per split;
- ``contact_sheet.png``: four frames of each item (up to ``max_items``) with its prompt
  and a pass (green) or fail (red) mark per metric.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from tenku.eval.metrics import METRICS, RATES
from tenku.eval.runner import ItemResult, to_json
from tenku.eval.suites import SPLITS
from tenku.io import VideoReadError, atomic_path, read_video

PASS = 0.999  # an item passes a metric at (or, for rounding, just under) full marks


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def markdown(
    summary: dict[str, Any], normalised: dict[str, float | None] | None, title: str
) -> str:
    """The summary as a Markdown page (scores in percent)."""
    splits = list(summary["by_split"])
    lines = [
        f"# {title}",
        "",
        f"{summary['items']} videos, {summary['failed']} failed to generate.",
        "",
    ]
    lines += ["| metric | overall | " + " | ".join(splits) + " |"]
    lines += ["|---" * (len(splits) + 2) + "|"]
    for k in (*METRICS, *RATES):
        if k not in summary["overall"]:
            continue
        row = [_fmt(summary["by_split"][s].get(k)) for s in splits]
        name = f"{k} (lower is better)" if k in RATES else k
        lines.append(f"| {name} | {_fmt(summary['overall'][k])} | " + " | ".join(row) + " |")
    if normalised:
        lines += ["", "Normalised: (score - trivial baseline) / (ground truth - baseline).", ""]
        lines += ["| metric | normalised |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in normalised.items()]
    if summary.get("motion_by_type"):
        lines += ["", "| motion | accuracy |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in summary["motion_by_type"].items()]
    return "\n".join(lines) + "\n"


def plot_metrics(summary: dict[str, Any], path: Path, title: str) -> None:
    """Grouped bars: one group per metric, one bar per split."""
    names = [k for k in METRICS if k in summary["overall"]]
    splits = [s for s in SPLITS if s in summary["by_split"]]
    fig = Figure(figsize=(max(8, 1.3 * len(names)), 5), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / max(len(splits), 1)
    colours = colormaps["tab10"]
    for i, s in enumerate(splits):
        values = [summary["by_split"][s].get(k, np.nan) for k in names]
        ax.bar(np.arange(len(names)) + i * width, values, width, label=s, color=colours(i))
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=20)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score")
    ax.set_title(title)
    fig.legend(fontsize=8, ncols=4, loc="outside lower center")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def contact_sheet(results: list[ItemResult], path: Path, max_items: int = 24) -> None:
    """Four frames per item, its prompt, and a pass/fail mark per metric."""
    shown = [r for r in results if r.video][:max_items]
    if not shown:
        return
    fig = Figure(figsize=(9, 1.6 * len(shown)))
    axes = fig.subplots(len(shown), 1, squeeze=False)
    for ax, r in zip(axes[:, 0], shown, strict=True):
        try:
            frames = read_video(r.video).frames
        except VideoReadError:
            ax.axis("off")
            continue
        picks = np.linspace(0, len(frames) - 1, 4).round().astype(int)
        gap = np.full((frames.shape[1], 4, 3), 255, np.uint8)
        strip = np.concatenate([x for i in picks for x in (frames[i], gap)][:-1], axis=1)
        ax.imshow(strip)
        ax.set_xticks([])
        ax.set_yticks([])
        prompt = r.prompt if len(r.prompt) < 110 else r.prompt[:107] + "..."
        ax.set_title(f"{r.id}: {prompt}", fontsize=6, loc="left")
        marks = [(k, v >= PASS) for k, v in r.metrics.items()]
        for j, (k, ok) in enumerate(marks):
            ax.text(
                1.01,
                1 - j / max(len(marks), 1),
                ("PASS " if ok else "FAIL ") + k,
                transform=ax.transAxes,
                fontsize=5,
                va="top",
                color="green" if ok else "red",
            )
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def write_report(
    out: Path,
    summary: dict[str, Any],
    results: list[ItemResult],
    *,
    normalised: dict[str, float | None] | None = None,
    references: dict[str, dict] | None = None,
    meta: dict[str, Any] | None = None,
    title: str = "tenku world benchmark",
) -> dict[str, Path]:
    """Write results.json, summary.md, metrics.png and contact_sheet.png into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / "results.json",
        "markdown": out / "summary.md",
        "metrics": out / "metrics.png",
        "contact_sheet": out / "contact_sheet.png",
    }
    data = {
        "meta": meta or {},
        "summary": summary,
        "normalised": normalised,
        "references": references or {},
        "items": to_json(results),
    }
    with atomic_path(paths["json"]) as tmp:
        tmp.write_text(json.dumps(data, indent=1, default=float))
    with atomic_path(paths["markdown"]) as tmp:
        tmp.write_text(markdown(summary, normalised, title))
    plot_metrics(summary, paths["metrics"], title)
    contact_sheet(results, paths["contact_sheet"])
    return paths
