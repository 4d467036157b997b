"""Run a video source over a suite, score every video, and summarise.

A *source* turns a suite item into a video file: the ground truth (optionally corrupted),
a prompt-blind baseline, or any command template (``tenku generate {prompt} --seed {seed}
-o {output}`` once the model exists, or another system's CLI).
"""

from __future__ import annotations

import shlex
import subprocess
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from tenku.eval.corruptions import CORRUPTIONS
from tenku.eval.metrics import METRICS, RATES, applicable_metrics, score
from tenku.eval.perception import perceive
from tenku.eval.suites import SPLITS, SuiteItem
from tenku.io import VideoReadError, read_video, write_video
from tenku.world.render import render
from tenku.world.sample import SamplerConfig, sample_scene

Source = Callable[[SuiteItem, Path], Path]  # (item, path without suffix) -> video file written
NORMALISE_MIN_GAP = 0.05  # ceiling - baseline below this: the metric is not normalised
# the trivial baseline of each metric (docs/benchmark.md): what a generator scores that
# ignores the prompt (content metrics), shows no motion (physics, permanence), or breaks time
BASELINES = {
    "presence": "prompt_blind",
    "binding": "prompt_blind",
    "motion": "prompt_blind",
    "left_right": "prompt_blind",
    "counting": "prompt_blind",
    "background": "prompt_blind",
    "physics": "freeze",
    "permanence": "freeze",
    "consistency": "shuffle",
}


class GenerationError(RuntimeError):
    """A source failed to produce a video for an item."""


def ground_truth(corrupt: str | None = None) -> Source:
    """Render each item's scene (optionally corrupted) and encode it as H.264 mp4."""
    if corrupt is not None and corrupt not in CORRUPTIONS:
        raise ValueError(f"corrupt: {corrupt!r} is not one of {sorted(CORRUPTIONS)}")

    def make(item: SuiteItem, stem: Path) -> Path:
        frames = render(item.spec)
        if corrupt is not None:
            frames = CORRUPTIONS[corrupt](frames, item.spec, np.random.default_rng(item.seed))
        return write_video(stem.with_suffix(".mp4"), frames, item.spec.fps)

    return make


def prompt_blind() -> Source:
    """A baseline that ignores the prompt: a random world scene of the requested shape."""

    def make(item: SuiteItem, stem: Path) -> Path:
        s = item.spec
        cfg = SamplerConfig(width=s.width, height=s.height, frames=s.frames, fps=s.fps)
        scene = sample_scene(np.random.default_rng([item.seed, 1]), cfg)
        return write_video(stem.with_suffix(".mp4"), render(scene), s.fps)

    return make


def command(template: str, *, timeout: float = 600.0) -> Source:
    """Run a shell command per item. Fields: {prompt} {seed} {width} {height} {size}
    {frames} {fps} {seconds} {output}; each is shell-quoted. The command must write an
    mp4 to {output}."""
    fields = ("prompt", "seed", "width", "height", "size", "frames", "fps", "seconds", "output")
    try:
        template.format(**dict.fromkeys(fields, ""))
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(f"command: bad template {template!r} ({e}); fields: {fields}") from None
    if "{output}" not in template:
        raise ValueError("command: the template must contain {output}")

    def make(item: SuiteItem, stem: Path) -> Path:
        s, out = item.spec, stem.with_suffix(".mp4")
        out.parent.mkdir(parents=True, exist_ok=True)
        values = {
            "prompt": item.prompt,
            "seed": item.seed,
            "width": s.width,
            "height": s.height,
            "size": f"{s.width}x{s.height}",
            "frames": s.frames,
            "fps": f"{s.fps:g}",
            "seconds": f"{s.seconds:g}",
            "output": str(out),
        }
        cmd = template.format(**{k: shlex.quote(str(v)) for k, v in values.items()})
        done = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0 or not out.exists():
            tail = (done.stderr or done.stdout).strip()[-500:]
            raise GenerationError(f"{item.id}: command exited {done.returncode}: {tail}")
        return out

    return make


def model_source(
    pipeline: Any, *, steps: int | None = None, guidance: float | None = None
) -> Source:
    """Generate each item in-process with a :class:`~tenku.pipelines.TenkuPipeline`
    (the item's prompt, size, length, frame rate and seed)."""
    from tenku.pipelines import GenerationRequest

    def make(item: SuiteItem, stem: Path) -> Path:
        s = item.spec
        request = GenerationRequest(
            prompt=item.prompt,
            seconds=(s.frames - 1) / s.fps,
            width=s.width,
            height=s.height,
            fps=s.fps,
            seed=item.seed,
            steps=steps,
            guidance=guidance,
        )
        if request.frames != s.frames:
            raise ValueError(f"frames: the model makes 1 + 4k frames, the suite asks {s.frames}")
        (video,) = pipeline.generate(request)
        stem.parent.mkdir(parents=True, exist_ok=True)
        return write_video(stem.with_suffix(".mp4"), video.frames, video.fps)

    return make


@dataclass
class ItemResult:
    """What one item scored, with the figures behind it."""

    id: str
    split: str
    prompt: str
    seed: int
    video: str | None
    metrics: dict[str, float]
    rates: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def evaluate(
    items: list[SuiteItem], source: Source, out: Path, *, progress: bool = True, desc: str = "eval"
) -> list[ItemResult]:
    """Generate, perceive and score every item; a failed item scores 0 where it applies."""
    results = []
    for item in tqdm(items, desc=desc, unit="video", disable=not progress):
        try:
            path = source(item, out / "videos" / item.id)
            video = read_video(path)
            s = score(item.spec, item.caption, perceive(video.frames, video.fps))
            results.append(
                ItemResult(
                    item.id,
                    item.split,
                    item.prompt,
                    item.seed,
                    str(path),
                    s.metrics,
                    s.rates,
                    s.details,
                )
            )
        except (GenerationError, VideoReadError, subprocess.TimeoutExpired) as e:
            zeros = dict.fromkeys(applicable_metrics(item.spec, item.caption), 0.0)
            results.append(
                ItemResult(item.id, item.split, item.prompt, item.seed, None, zeros, {}, {}, str(e))
            )
    return results


def summarise(results: list[ItemResult]) -> dict[str, Any]:
    """Mean of every metric and rate per split, and overall (each split weighs the same)."""
    by_split: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    motion_types: dict[str, list[bool]] = defaultdict(list)
    for r in results:
        for k, v in {**r.metrics, **r.rates}.items():
            by_split[r.split][k].append(v)
        for m in r.details.get("motions", {}).values():
            motion_types[m["asked"]].append(m["asked"] == m["seen"])
    splits = [s for s in SPLITS if s in by_split]
    table = {s: {k: float(np.mean(v)) for k, v in by_split[s].items()} for s in splits}
    overall = {}
    for k in (*METRICS, *RATES):
        means = [table[s][k] for s in splits if k in table[s]]
        if means:
            overall[k] = float(np.mean(means))
    return {
        "by_split": table,
        "overall": overall,
        "motion_by_type": {k: float(np.mean(v)) for k, v in sorted(motion_types.items())},
        "items": len(results),
        "failed": sum(r.error is not None for r in results),
    }


def normalise(raw: dict, baselines: dict[str, dict], ceiling: dict) -> dict[str, float | None]:
    """``(raw - baseline) / (ceiling - baseline)`` per overall metric (None if the gap is tiny)."""
    out: dict[str, float | None] = {}
    for k, v in raw["overall"].items():
        if k not in BASELINES:
            continue
        base = baselines[BASELINES[k]]["overall"].get(k)
        top = ceiling["overall"].get(k)
        if base is None or top is None or top - base < NORMALISE_MIN_GAP:
            out[k] = None
        else:
            out[k] = (v - base) / (top - base)
    return out


def reference_sources() -> dict[str, Source]:
    """The trivial baselines named in :data:`BASELINES`."""
    return {
        "prompt_blind": prompt_blind(),
        "freeze": ground_truth("freeze"),
        "shuffle": ground_truth("shuffle"),
    }


def to_json(results: list[ItemResult]) -> list[dict[str, Any]]:
    return [asdict(r) for r in results]
