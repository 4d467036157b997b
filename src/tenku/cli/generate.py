"""``tenku generate PROMPT -o out.mp4``: text to video with the shipped (or a given) model,
and ``tenku export``: assemble a model folder from trained VAE and transformer runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tenku.cli.world import parse_size, write_json
from tenku.diffusion import SAMPLERS
from tenku.io import write_video
from tenku.pipelines.request import ASPECTS, LIMITS, GenerationRequest, size_for

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
        description="Generate a video from a text prompt with the native model.",
        epilog=GENERATE_EPILOG,
        formatter_class=formatter,
    )
    parser.add_argument("prompt", nargs="?", help="what the video shows (at most 1000 characters)")
    parser.add_argument("-o", "--out", required=True, help="output video: .mp4 or .gif")
    parser.add_argument(
        "--seconds",
        type=float,
        default=4.0,
        help=f"duration in seconds, {LIMITS['seconds'][0]:g} to {LIMITS['seconds'][1]:g}",
    )
    parser.add_argument("--fps", type=float, default=8.0, help="frames per second")
    parser.add_argument(
        "--size",
        type=parse_size,
        default=None,
        help="WxH in pixels, multiples of 16 (default 128x128; overrides --aspect/--resolution)",
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
        "--sampler", choices=sorted(SAMPLERS), default=None, help="ODE sampler (model default)"
    )
    parser.add_argument("--variations", type=int, default=1, help="videos from distinct seeds")
    parser.add_argument(
        "--from-json", default=None, help="repeat the request recorded in a sidecar JSON"
    )
    parser.add_argument(
        "--model", default=None, help="model folder (default: shipped weights or $TENKU_MODEL)"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=cmd_generate)


def request_from_args(args: argparse.Namespace) -> GenerationRequest:
    """The validated request the options describe (or the one in ``--from-json``)."""
    if args.from_json is not None:
        import json

        recorded = json.loads(Path(args.from_json).read_text())["request"]
        return GenerationRequest(**recorded)
    if not args.prompt:
        raise ValueError("prompt: give a prompt (or --from-json FILE)")
    if args.size is not None:
        width, height = args.size
    elif args.aspect is not None:
        width, height = size_for(args.aspect, args.resolution)
    else:
        width, height = 128, 128
    return GenerationRequest(
        prompt=args.prompt,
        seconds=args.seconds,
        width=width,
        height=height,
        fps=args.fps,
        seed=args.seed,
        steps=args.steps,
        guidance=args.guidance,
        sampler=args.sampler,
        variations=args.variations,
    )


def output_paths(out: Path, n: int) -> list[Path]:
    if out.suffix.lower() not in (".mp4", ".gif"):
        raise ValueError(f"out: {out} must end in .mp4 or .gif")
    if n == 1:
        return [out]
    return [out.with_name(f"{out.stem}-{i + 1}{out.suffix}") for i in range(n)]


def cmd_generate(args: argparse.Namespace) -> None:
    request = request_from_args(args)
    paths = output_paths(Path(args.out), request.variations)
    if args.threads is not None:
        import torch

        torch.set_num_threads(max(args.threads, 1))
    from tenku.pipelines import TenkuPipeline

    pipe = TenkuPipeline.from_pretrained(args.model, device=args.device)
    videos = pipe.generate(request, progress=not args.quiet)
    for video, path in zip(videos, paths, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        write_video(path, video.frames, video.fps)
        write_json(path.with_suffix(".json"), {**video.sidecar(), "video": path.name})
        if not args.quiet:
            print(f"{path} (seed {video.request.seed})", file=sys.stderr)


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
    parser.add_argument("--sampler", choices=sorted(SAMPLERS), default=None, help="default")
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
