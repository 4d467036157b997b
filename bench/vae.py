"""Reconstruction quality of the shipped (or a given) video VAE.

    python bench/vae.py [--clips 32] [--suite quick] [--vae DIR]

Prints the PSNR of VAE round trips of held-out world clips (128x128, 17 frames, a seed no
training set uses), and the world benchmark's scores for the round-tripped ground truth
against the ground truth itself, metric by metric, on one suite (both through H.264).
Targets (issue 4): PSNR >= 35 dB, and every metric within 2 points of the ground truth.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from tenku.eval.metrics import METRICS
from tenku.eval.runner import evaluate, ground_truth, summarise
from tenku.eval.suites import SuiteItem, build_suite
from tenku.io import write_video
from tenku.models.vae import VideoVAE, to_model_input, to_uint8
from tenku.pipelines import default_model_path
from tenku.train.vae import evaluate_vae, heldout_clips
from tenku.world.render import render


def round_trip_source(vae: VideoVAE):
    """Render each item's scene, pass it through the VAE, write the result as mp4."""

    @torch.no_grad()
    def make(item: SuiteItem, stem: Path) -> Path:
        frames = render(item.spec)
        z = vae.encode(to_model_input(frames[None])).mode()
        return write_video(stem.with_suffix(".mp4"), to_uint8(vae.decode(z))[0], item.spec.fps)

    return make


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=32, help="held-out clips for PSNR")
    parser.add_argument("--suite", default="quick", help="benchmark suite for the scores")
    parser.add_argument("--vae", default=None, help="VAE folder (default: the shipped one)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    vae = VideoVAE.from_pretrained(args.vae or default_model_path() / "vae")
    stats = evaluate_vae(vae, heldout_clips(args.clips))
    print(
        f"PSNR over {args.clips} held-out 128x128x17 clips: {stats['psnr']:.2f} dB "
        f"(worst clip {stats['psnr_min_clip']:.2f} dB; "
        f"object pixels {stats['psnr_objects']:.2f} dB) [target >= 35 dB]"
    )
    items = build_suite(args.suite, width=128, height=128, frames=17, fps=8.0, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        truth = summarise(evaluate(items, ground_truth(), Path(tmp) / "gt", desc="ground truth"))
        recon = summarise(
            evaluate(items, round_trip_source(vae), Path(tmp) / "vae", desc="VAE round trip")
        )
    print(f"{'metric':<14}{'truth':>8}{'VAE':>8}{'gap':>8}")
    gaps = []
    for k in METRICS:
        if k in truth["overall"] and k in recon["overall"]:
            a, b = 100 * truth["overall"][k], 100 * recon["overall"][k]
            gaps.append(a - b)
            print(f"{k:<14}{a:>7.1f}%{b:>7.1f}%{a - b:>7.1f}")
    print(f"largest gap {max(gaps):.1f} points [target <= 2] ({len(items)} prompts)")


if __name__ == "__main__":
    main()
