"""Renderer throughput: frames per second on one core at several canvas sizes.

    python bench/render.py [--seconds 3] [--sizes 64 128 256] [--frames 17]

For each size it renders a fixed set of random scenes (1-3 objects or a counting scene,
pillar in a quarter of them, every background and motion) over and over for the given
time, pinned to one CPU core, and prints frames per second for rendering alone and for
sampling + rendering together (what a data loader pays per clip). Then it renders one batch
of ``--batch`` scenes at 128x128 with the numpy renderer (clip by clip) and with the batched
torch renderer (``render_batch``, on ``--device``) and prints clips per second side by side.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import time
from collections.abc import Iterator

import numpy as np
import torch
from tqdm import tqdm

from tenku.world.render import render
from tenku.world.render_torch import render_batch
from tenku.world.sample import SamplerConfig, sample_scene
from tenku.world.spec import SceneSpec

TARGET_128 = 2000  # frames/s at 128x128 on one core (issue 2)


def throughput(fn, frames_per_call: int, seconds: float, desc: str) -> float:
    """Frames per second of ``fn()`` run repeatedly for ``seconds``."""
    done, start = 0, time.perf_counter()
    with tqdm(desc=desc, unit="frame", leave=False) as bar:
        while (elapsed := time.perf_counter() - start) < seconds:
            fn()
            done += frames_per_call
            bar.update(frames_per_call)
    return done / elapsed


def _render_next(specs: Iterator[SceneSpec]) -> None:
    render(next(specs))


def _sample_and_render(rng: np.random.Generator, cfg: SamplerConfig) -> None:
    render(sample_scene(rng, cfg))


def batched(specs: list[SceneSpec], device: str, seconds: float) -> tuple[float, float]:
    """Clips per second of the numpy renderer and of ``render_batch`` on ``device``."""
    numpy_fps = throughput(lambda: [render(s) for s in specs], len(specs), seconds, "numpy")
    sync = torch.cuda.synchronize if device.startswith("cuda") else lambda: None
    render_batch(specs, device)  # warm-up (CUDA context, kernels)
    sync()
    torch_fps = throughput(
        lambda: (render_batch(specs, device), sync()), len(specs), seconds, f"torch {device}"
    )
    return numpy_fps, torch_fps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256], help="square sides")
    parser.add_argument("--frames", type=int, default=17, help="frames per clip")
    parser.add_argument("--scenes", type=int, default=64, help="distinct random scenes per size")
    parser.add_argument("--batch", type=int, default=64, help="scenes per render_batch call")
    parser.add_argument("--device", default="cpu", help="torch device for render_batch")
    args = parser.parse_args()

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    torch.set_num_threads(1)  # the same one core for the torch renderer on CPU
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    print(f"renderer, {args.frames}-frame clips, {cores} core(s), numpy {np.__version__}")
    print(f"{'size':>9} {'render fps':>12} {'sample+render fps':>18} {'ms/clip':>8}")
    results = {}
    for side in args.sizes:
        cfg = SamplerConfig(width=side, height=side, frames=args.frames)
        rng = np.random.default_rng(0)
        specs = [sample_scene(rng, cfg) for _ in range(args.scenes)]
        replay = functools.partial(_render_next, itertools.cycle(specs))
        fresh = functools.partial(_sample_and_render, rng, cfg)
        fps = throughput(replay, args.frames, args.seconds, f"{side}px")
        both = throughput(fresh, args.frames, args.seconds, f"{side}px+sample")
        results[side] = fps
        print(f"{side:>4}x{side:<4} {fps:>12,.0f} {both:>18,.0f} {1e3 * args.frames / fps:>8.2f}")
    if 128 in results:
        verdict = "meets" if results[128] >= TARGET_128 else "MISSES"
        print(f"128x128: {results[128]:,.0f} frames/s {verdict} the {TARGET_128:,} frames/s aim")

    cfg = SamplerConfig(width=128, height=128, frames=args.frames)
    rng = np.random.default_rng(1)
    specs = [sample_scene(rng, cfg) for _ in range(args.batch)]
    numpy_fps, torch_fps = batched(specs, args.device, args.seconds)
    print(f"batch of {args.batch} clips of {args.frames}x128x128, clips/s:")
    print(f"{'numpy render':>22} {'torch render_batch':>20}")
    print(f"{numpy_fps:>22,.1f} {torch_fps:>20,.1f}  ({args.device}, {torch_fps / numpy_fps:.2f}x)")


if __name__ == "__main__":
    main()
