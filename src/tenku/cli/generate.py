"""``tenku generate PROMPT -o out.mp4``: text to video with the shipped (or a given) model,
and ``tenku export``: assemble a model folder from trained VAE and transformer runs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tenku.cli.models import add_backend_arguments, backend_kwargs
from tenku.cli.output import clean_sources, output_paths, save_videos
from tenku.cli.world import parse_size
from tenku.pipelines.request import ASPECTS, LIMITS, SAMPLER_NAMES, GenerationRequest, size_for

GENERATE_EPILOG = """\
Examples:
  tenku generate "a red ball bounces on a white background" -o ball.mp4
  tenku generate "a blue square moves from left to right" --seconds 2 --seed 7 -o sq.mp4
  tenku generate "two green triangles" --aspect 16:9 --resolution 128 --variations 3 -o tri.mp4

Beside each video a JSON sidecar (same name, .json) records the full request with its seed,
steps, guidance and sampler: `tenku generate --from-json out.json -o again.mp4` makes the same
video again. With --variations N the videos are OUT-1.mp4 ... OUT-N.mp4 from seeds SEED ...
SEED+N-1."""


def add_parser(commands: argparse._SubParsersAction, formatter: type) -> None:
    parser = commands.add_parser(
        "generate",
        help="generate a video from a text prompt",
        description="Generate a video from a text prompt with the native model, or with an "
        "open-weight model (Wan, LTX-Video, CogVideoX) named by --model (see `tenku models`).",
        epilog=GENERATE_EPILOG,
        formatter_class=formatter,
    )
    parser.add_argument("prompt", nargs="?", help="what the video shows (at most 1000 characters)")
    parser.add_argument(
        "--from-json", default=None, help="repeat the request recorded in a sidecar JSON"
    )
    add_video_options(parser)
    add_run_options(parser, "output video: .mp4 or .gif")
    parser.set_defaults(func=cmd_generate)


def add_video_options(parser: argparse.ArgumentParser, *, seconds: float | None = 4.0) -> None:
    """The options every generating command shares: duration, size, seed and sampling.

    ``seconds=None`` leaves the duration to the command (e.g. that of a source video).
    """
    if seconds is not None:
        parser.add_argument(
            "--seconds",
            type=float,
            default=seconds,
            help=f"duration in seconds, {LIMITS['seconds'][0]:g} to {LIMITS['seconds'][1]:g} "
            "(0: one frame; over 4 s: made in 4-second windows, each following the last)",
        )
    parser.add_argument("--fps", type=float, default=None, help="frames per second (default 8)")
    parser.add_argument(
        "--size",
        type=parse_size,
        default=None,
        help="WxH in pixels, multiples of 16 (default 128x128, or a source's size; "
        "overrides --aspect/--resolution)",
    )
    parser.add_argument(
        "--aspect", choices=sorted(ASPECTS), default=None, help="aspect ratio (with --resolution)"
    )
    parser.add_argument(
        "--resolution", type=int, default=128, help="short side in pixels, with --aspect"
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument("--steps", type=int, default=None, help="sampler steps (model default)")
    parser.add_argument(
        "--guidance", type=float, default=None, help="classifier-free guidance (model default)"
    )
    parser.add_argument(
        "--sampler", choices=SAMPLER_NAMES, default=None, help="ODE sampler (model default)"
    )
    parser.add_argument("--variations", type=int, default=1, help="videos from distinct seeds")


def add_run_options(parser: argparse.ArgumentParser, out_help: str) -> None:
    """Where the output goes and what runs the model."""
    parser.add_argument("-o", "--out", required=True, help=out_help)
    parser.add_argument(
        "--model",
        default=None,
        help="an installed model's NAME (see `tenku models`) or a model folder: native "
        "(pipeline.json) or diffusers (model_index.json: Wan, LTX-Video, CogVideoX); "
        "default: the shipped weights or $TENKU_MODEL",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--no-watermark",
        action="store_true",
        help="no visible mark (the invisible watermark and the C2PA manifest stay)",
    )
    parser.add_argument(
        "--policy",
        default=None,
        help="moderation policy file laid over the shipped one (default: "
        "$TENKU_MODERATION_POLICY); a refused prompt stops here and exits 2",
    )
    add_backend_arguments(parser)


def video_options(args: argparse.Namespace) -> dict[str, Any]:
    """The request fields the shared options set: those given, and the size if asked for."""
    names = ("seconds", "fps", "seed", "steps", "guidance", "sampler", "variations")
    options = {k: getattr(args, k) for k in names if getattr(args, k, None) is not None}
    if args.size is not None:
        options["width"], options["height"] = args.size
    elif args.aspect is not None:
        options["width"], options["height"] = size_for(args.aspect, args.resolution)
    return options


def run_request(args: argparse.Namespace, request: GenerationRequest) -> None:
    """Moderate every prompt of ``request``, generate it with the model the options name and
    save the videos. A refused prompt raises before any model loads."""
    from tenku.safety.moderation import ensure_allowed
    from tenku.safety.policy import load_policy
    from tenku.safety.visible import VisibleOptions

    policy = load_policy(args.policy)
    for field, text in request.prompts():
        ensure_allowed(text, policy, field=field)
    suffixes = (".png",) if request.frames == 1 else (".mp4", ".gif")
    paths = output_paths(Path(args.out), request.variations, suffixes)
    if args.threads is not None:
        import torch

        torch.set_num_threads(max(args.threads, 1))
    from tenku.pipelines.registry import load_backend

    sourced, notes = clean_sources(request)  # tenku's own outputs: their unmarked originals
    for note in notes:
        print(f"tenku: {note}", file=sys.stderr)
    backend = load_backend(args.model, **backend_kwargs(args))
    videos = backend.generate(sourced, progress=not args.quiet)
    visible = VisibleOptions(enabled=not args.no_watermark)
    save_videos(videos, paths, quiet=args.quiet, visible=visible, sources=request)


def cmd_generate(args: argparse.Namespace) -> None:
    if args.from_json is not None:
        recorded = json.loads(Path(args.from_json).read_text())["request"]
        request = GenerationRequest(**recorded)
    elif not args.prompt:
        raise ValueError("prompt: give a prompt (or --from-json FILE)")
    else:
        request = GenerationRequest(args.prompt, **video_options(args))
    run_request(args, request)


def add_export_parser(commands: argparse._SubParsersAction, formatter: type) -> None:
    parser = commands.add_parser(
        "export",
        help="assemble a model folder from a trained VAE and transformer",
        description=(
            "Copy a trained VAE and transformer (the `model` folders of `tenku train` runs) "
            "into one model folder that `tenku generate --model` loads."
        ),
        formatter_class=formatter,
    )
    parser.add_argument("--vae", required=True, help="VAE folder (config.json + weights)")
    parser.add_argument("--transformer", required=True, help="transformer folder")
    parser.add_argument("--out", required=True, help="model folder to write")
    parser.add_argument("--name", default="tenku-custom", help="model name recorded in outputs")
    parser.add_argument("--steps", type=int, default=None, help="default sampler steps")
    parser.add_argument("--guidance", type=float, default=None, help="default guidance scale")
    parser.add_argument("--sampler", choices=SAMPLER_NAMES, default=None, help="default")
    parser.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> None:
    from tenku.pipelines import export_model

    defaults = {
        k: v
        for k, v in (("steps", args.steps), ("guidance", args.guidance), ("sampler", args.sampler))
        if v is not None
    }
    out = export_model(args.vae, args.transformer, args.out, name=args.name, defaults=defaults)
    print(out)
