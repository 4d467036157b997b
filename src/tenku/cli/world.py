"""``tenku world ...``: sample, render and write datasets of the sandbox world."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from tenku.io import atomic_path
from tenku.world.captions import TEMPLATES, caption, captions
from tenku.world.dataset import PRESETS, get_preset, write_dataset
from tenku.world.render import render
from tenku.world.sample import SamplerConfig, sample_scene
from tenku.world.spec import SceneSpec, SpecError

FORMATS = ("mp4", "gif", "png")


def parse_size(text: str) -> tuple[int, int]:
    """``"WxH"`` -> ``(W, H)``; both must be multiples of 16."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH such as 128x128, got {text!r}") from None
    if w <= 0 or h <= 0 or w % 16 or h % 16:
        raise argparse.ArgumentTypeError(f"width and height must be multiples of 16, got {text!r}")
    return w, h


def save_clip(frames: np.ndarray, fps: float, stem: Path, fmt: str) -> Path:
    """Write ``frames`` (T, H, W, 3) as ``stem.mp4``, ``stem.gif`` or a folder of PNGs."""
    from tenku.io import write_frames, write_video

    if fmt == "png":
        write_frames(stem, frames)
        return stem
    return write_video(stem.with_suffix(f".{fmt}"), frames, fps)


def write_json(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1) + "\n")


def cmd_sample(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    width, height = args.size
    for name in ("pillar_prob", "counting_prob"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise ValueError(f"{name.replace('_', '-')}: must lie in [0, 1]")
    cfg = SamplerConfig(
        width=width,
        height=height,
        frames=args.frames,
        fps=args.fps,
        pillar_prob=args.pillar_prob,
        counting_prob=args.counting_prob,
    )
    out = Path(args.out)
    for i in tqdm(range(args.n), desc="sample", unit="video", disable=args.quiet):
        rng = np.random.default_rng([args.seed, i])  # sample i is the same whatever -n is
        spec = sample_scene(rng, cfg)
        stem = out / f"sample_{i:04d}"
        path = save_clip(render(spec), spec.fps, stem, args.format)
        write_json(
            stem.with_suffix(".json"),
            {
                "video": path.name,
                "caption": caption(spec, rng, args.split),
                "captions": captions(spec, rng, 3, args.split),
                "canonical_caption": caption(spec),
                "spec": spec.to_dict(),
            },
        )
    if not args.quiet:
        print(f"wrote {args.n} {args.format} samples with specs and captions to {out}")


def cmd_render(args: argparse.Namespace) -> None:
    try:
        data = json.loads(Path(args.spec).read_text())
    except json.JSONDecodeError as e:
        raise SpecError(f"spec: {args.spec} is not valid JSON ({e})") from None
    spec = SceneSpec.from_dict(data.get("spec", data) if isinstance(data, dict) else data)
    out = Path(args.output)
    fmt = out.suffix.lstrip(".") or "png"
    if fmt not in FORMATS:
        raise ValueError(f"output: suffix .{fmt} is not one of {', '.join(FORMATS)} (or a folder)")
    path = save_clip(render(spec), spec.fps, out.with_suffix(""), fmt)
    print(f"wrote {path}  ({spec.frames} frames, {spec.width}x{spec.height}, {spec.fps:g} fps)")
    print(caption(spec))


def cmd_dataset(args: argparse.Namespace) -> None:
    preset = get_preset(args.preset)
    if args.videos is not None:
        if args.videos < 1:
            raise ValueError(f"videos: must be at least 1, got {args.videos}")
        preset = replace(preset, videos=args.videos)
    if args.seed is not None:
        preset = replace(preset, seed=args.seed)
    index = write_dataset(preset, args.out, workers=args.workers, progress=not args.quiet)
    summary = json.loads(index.read_text())
    size = sum(s["bytes"] for s in summary["shards"]) / 1e6
    print(f"{index}: {summary['videos']} videos in {len(summary['shards'])} shards, {size:.1f} MB")


def add_parser(commands: argparse._SubParsersAction, formatter: type) -> None:
    world = commands.add_parser(
        "world",
        help="the sandbox world: sample videos, render specs, write training sets",
        description="The sandbox world (WORLD.md): procedurally rendered videos whose ground "
        "truth is known.",
        formatter_class=formatter,
    )
    verbs = world.add_subparsers(title="world commands", metavar="VERB", required=True)

    p = verbs.add_parser(
        "sample",
        help="write random videos with their spec and captions",
        description="Write N random sandbox-world videos, each with a JSON file holding its "
        "scene spec and captions. Sample i depends only on --seed and i.",
        formatter_class=formatter,
    )
    p.add_argument("-n", type=int, default=8, help="number of videos")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument(
        "--size",
        type=parse_size,
        default="128x128",
        metavar="WxH",
        help="canvas in pixels, multiples of 16 (16:9 is e.g. 256x144 or 224x128; 9:16 is 128x224)",
    )
    p.add_argument("--frames", type=int, default=17, help="frames per video")
    p.add_argument("--fps", type=float, default=8.0, help="frames per second")
    p.add_argument("--format", choices=FORMATS, default="mp4", help="mp4 (H.264), gif, or png")
    p.add_argument(
        "--split", choices=sorted(TEMPLATES), default="train", help="caption template split"
    )
    defaults = SamplerConfig()
    p.add_argument(
        "--pillar-prob", type=float, default=defaults.pillar_prob, help="chance of a pillar"
    )
    p.add_argument(
        "--counting-prob",
        type=float,
        default=defaults.counting_prob,
        help="chance of a counting scene (all objects alike, e.g. 'three green balls')",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sample)

    p = verbs.add_parser(
        "render",
        help="render a scene spec JSON to a video",
        description="Render a scene spec (a JSON file as written by `tenku world sample`, or "
        "a bare spec) to .mp4, .gif, or a folder of PNG frames (no suffix).",
        formatter_class=formatter,
    )
    p.add_argument("spec", help="JSON file with a scene spec (or a sample's JSON)")
    p.add_argument("-o", "--output", required=True, help="output .mp4, .gif or folder")
    p.set_defaults(func=cmd_render)

    presets = "\n".join(f"  {name:10s} {p.description}" for name, p in PRESETS.items())
    p = verbs.add_parser(
        "dataset",
        help="write a seeded, sharded training set",
        description="Write a reproducible training set of compressed .npz shards and an "
        "index.json. Rerunning into the same folder resumes where it stopped.",
        epilog=f"presets:\n{presets}",
        formatter_class=formatter,
    )
    p.add_argument("--preset", required=True, choices=sorted(PRESETS), help="dataset recipe")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--workers", type=int, default=2, help="processes rendering shards")
    p.add_argument("--videos", type=int, help="override the preset's number of videos")
    p.add_argument("--seed", type=int, help="override the preset's seed")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_dataset)
