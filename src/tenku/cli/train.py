"""``tenku train vae|dit --preset NAME``: train (or resume) a model from a named recipe."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from tenku.train.loop import pick_device, pick_precision
from tenku.train.presets import TRAIN_PRESETS, get_train_preset

EPILOG = """\
Presets:
{presets}

Rerunning the same command resumes from OUT/state.pt. OUT/model holds the EMA weights
(fp16 safetensors + config.json); OUT/loss.png plots the loss curve.

The shipped default model is rebuilt with:
  tenku train vae --preset world --out runs/vae-world
  tenku train dit --preset world --vae runs/vae-world/model --out runs/dit-world"""


def add_parser(commands: argparse._SubParsersAction, formatter: type) -> None:
    listing = "\n".join(
        f"  {kind} {name}: {p.description} ({p.steps} steps of {p.batch_size})"
        for kind, presets in TRAIN_PRESETS.items()
        for name, p in presets.items()
    )
    parser = commands.add_parser(
        "train",
        help="train the video VAE or the diffusion transformer from a named recipe",
        description="Train the video VAE (`vae`) or the diffusion transformer (`dit`).",
        epilog=EPILOG.format(presets=listing),
        formatter_class=formatter,
    )
    parser.add_argument("kind", choices=sorted(TRAIN_PRESETS), help="which model to train")
    parser.add_argument("--preset", default="world", help="recipe name (listed below)")
    parser.add_argument("--out", required=True, help="run folder: state, weights, loss curve")
    parser.add_argument(
        "--data",
        default=None,
        help="a dataset folder written by `tenku world dataset` with the preset's recipe; "
        "default: draw and render the preset's dataset on the fly",
    )
    parser.add_argument(
        "--vae", default=None, help="dit only: the trained VAE folder (config.json + weights)"
    )
    parser.add_argument(
        "--cache",
        default=None,
        help="dit only: folder for the latent and text cache (default OUT/cache)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "bf16", "fp32"),
        help="autocast dtype; auto = bf16 on CUDA and on CPUs with AMX, fp32 elsewhere",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads for torch (default: torch's)"
    )
    parser.add_argument(
        "--stop-at",
        type=int,
        default=None,
        help="stop at this step (checkpointed; rerun without it to finish)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> None:
    preset = get_train_preset(args.kind, args.preset)
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"threads: must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.stop_at is not None and args.stop_at < 1:
        raise ValueError(f"stop-at: must be >= 1, got {args.stop_at}")
    device = pick_device(args.device)
    precision = pick_precision(args.precision, device)
    common = {
        "data": args.data,
        "device": device,
        "precision": precision,
        "steps": args.stop_at,
        "progress": not args.no_progress,
    }
    if args.kind == "vae":
        from tenku.train.vae import train_vae

        trainer = train_vae(preset, args.out, **common)
    else:
        if args.vae is None:
            raise ValueError("vae: `tenku train dit` needs --vae DIR (a trained VAE folder)")
        from tenku.train.dit import train_dit

        cache = Path(args.cache) if args.cache else Path(args.out) / "cache"
        trainer = train_dit(preset, args.out, vae=args.vae, cache=cache, **common)
    meta = trainer.run_meta()
    summary = {k: v for k, v in meta.items() if k != "preset"}
    print(json.dumps(summary, indent=1))
