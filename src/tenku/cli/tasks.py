"""The task commands: ``tenku i2v | extend | connect | fill | recut | loop | remix | interpolate |
blend | storyboard | image``.

Each parses its own inputs, builds a request with :mod:`tenku.pipelines.tasks` and hands it to
the same runner as ``tenku generate`` (same options, outputs, sidecars and provenance).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from tenku.cli.generate import add_run_options, add_video_options, run_request, video_options
from tenku.pipelines import tasks
from tenku.pipelines.request import Card, GenerationRequest


def _span(text: str) -> tuple[float, float]:
    """``"START:END"`` in seconds."""
    try:
        start, end = (float(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected START:END in seconds, got {text!r}") from None
    return start, end


def _curve(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected weights such as 0,0.5,1, got {text!r}"
        ) from None


def _card(values: list[str]) -> Card:
    if len(values) not in (2, 3):
        raise ValueError("card: give AT PROMPT [IMAGE]")
    try:
        at = float(values[0])
    except ValueError:
        raise ValueError(f"card: AT must be seconds, got {values[0]!r}") from None
    return Card(at, values[1], values[2] if len(values) == 3 else None)


COMMANDS: dict[str, dict] = {
    "i2v": {
        "help": "image to video: an image becomes the first frame (optionally a last one too)",
        "args": [
            (("image",), {"help": "image for the first frame (PNG, JPEG, ...)"}),
            (("--last",), {"default": None, "help": "image for the last frame"}),
        ],
        "seconds": 4.0,
        "build": lambda a: tasks.image_to_video(
            a.prompt, a.image, last_image=a.last, **video_options(a)
        ),
    },
    "keyframes": {
        "help": "images placed at times (seconds) on the timeline; the rest is generated",
        "args": [
            (
                ("--at",),
                {
                    "nargs": 2,
                    "action": "append",
                    "metavar": ("SECONDS", "IMAGE"),
                    "required": True,
                    "help": "an image at a time (repeat)",
                },
            ),
        ],
        "seconds": 4.0,
        "build": lambda a: tasks.keyframes(
            a.prompt, [(p, float(t)) for t, p in a.at], **video_options(a)
        ),
    },
    "extend": {
        "help": "extend a video forward (or backward) by some seconds, following its motion",
        "args": [
            (("video",), {"help": "the clip to extend"}),
            (("--by",), {"type": float, "default": 2.0, "help": "seconds to add"}),
            (("--backward",), {"action": "store_true", "help": "add them before the clip"}),
        ],
        "build": lambda a: tasks.extend(
            a.prompt, a.video, a.by, backward=a.backward, **video_options(a)
        ),
    },
    "connect": {
        "help": "join two clips with a generated transition",
        "args": [
            (("first",), {"help": "the clip that plays first"}),
            (("second",), {"help": "the clip that plays after the transition"}),
            (("--gap",), {"type": float, "default": 1.0, "help": "seconds of transition"}),
        ],
        "build": lambda a: tasks.connect(
            a.prompt, a.first, a.second, gap=a.gap, **video_options(a)
        ),
    },
    "fill": {
        "help": "regenerate a missing span of a video (START:END seconds)",
        "args": [
            (("video",), {"help": "the clip"}),
            (("--span",), {"type": _span, "required": True, "help": "START:END in seconds"}),
        ],
        "build": lambda a: tasks.fill(a.prompt, a.video, *a.span, **video_options(a)),
    },
    "recut": {
        "help": "trim and reorder segments of a video, regenerating the seams",
        "args": [
            (("video",), {"help": "the clip"}),
            (
                ("--segment",),
                {
                    "type": _span,
                    "action": "append",
                    "required": True,
                    "help": "START:END seconds of the source (repeat, in output order)",
                },
            ),
            (("--seam",), {"type": float, "default": 0.5, "help": "seconds generated per seam"}),
        ],
        "build": lambda a: tasks.recut(
            a.prompt, a.video, a.segment, seam=a.seam, **video_options(a)
        ),
    },
    "loop": {
        "help": "a seamless loop: the last frame flows into the first",
        "args": [
            (("--video",), {"default": None, "help": "loop this clip (its last second is redone)"}),
        ],
        "seconds": 4.0,
        "build": lambda a: tasks.loop(a.prompt, a.video, **video_options(a)),
    },
    "remix": {
        "help": "video to video: change what the prompt changes, keep the motion",
        "args": [
            (("video",), {"help": "the source clip"}),
            (
                ("--strength",),
                {"type": float, "default": 0.5, "help": "0 keeps the source, 1 ignores it"},
            ),
        ],
        "build": lambda a: tasks.remix(a.prompt, a.video, strength=a.strength, **video_options(a)),
    },
    "interpolate": {
        "help": "raise a video's frame rate by generating in-between frames",
        "args": [
            (("video",), {"help": "the source clip"}),
            (("--factor",), {"type": int, "default": 2, "help": "frame-rate multiple, 2 to 8"}),
            (("--strength",), {"type": float, "default": 0.4, "help": "how much may change"}),
        ],
        "build": lambda a: tasks.interpolate(
            a.prompt, a.video, factor=a.factor, strength=a.strength, **video_options(a)
        ),
    },
    "blend": {
        "help": "blend PROMPT into a second prompt (and two videos) along a weight curve",
        "args": [
            (("other",), {"help": "the prompt blended in"}),
            (
                ("--videos",),
                {
                    "nargs": 2,
                    "default": (),
                    "metavar": ("A", "B"),
                    "help": "two source clips to mix along the same curve",
                },
            ),
            (
                ("--curve",),
                {
                    "type": _curve,
                    "default": (0.0, 1.0),
                    "help": "weights of the second prompt over time, e.g. 0,0.5,1",
                },
            ),
            (
                ("--strength",),
                {
                    "type": float,
                    "default": 0.7,
                    "help": "with --videos: how far from their mix to start",
                },
            ),
        ],
        "seconds": 4.0,
        "build": lambda a: tasks.blend(
            a.prompt,
            a.other,
            videos=tuple(a.videos),
            curve=a.curve,
            strength=a.strength,
            **video_options(a),
        ),
    },
    "storyboard": {
        "help": "one video through prompts placed on a timeline (long videos in windows)",
        "prompt": False,
        "args": [
            (
                ("--card",),
                {
                    "nargs": "+",
                    "action": "append",
                    "required": True,
                    "metavar": "AT PROMPT [IMAGE]",
                    "help": "from AT seconds on, follow PROMPT (optionally from IMAGE)",
                },
            ),
        ],
        "seconds": None,
        "build": lambda a: tasks.storyboard([_card(c) for c in a.card], **video_options(a)),
    },
    "image": {
        "help": "generate a still image (one frame, saved as PNG)",
        "args": [],
        "seconds": None,
        "out": "output image: .png",
        "build": lambda a: tasks.image(a.prompt, **video_options(a)),
    },
}


def add_parsers(commands: argparse._SubParsersAction, formatter: type) -> None:
    """Register every task command."""
    for name, spec in COMMANDS.items():
        parser = commands.add_parser(
            name,
            help=spec["help"],
            description=spec["help"][0].upper() + spec["help"][1:] + ".",
            formatter_class=formatter,
        )
        if spec.get("prompt", True):
            parser.add_argument("prompt", help="what the video shows (at most 1000 characters)")
        for flags, kwargs in spec["args"]:
            parser.add_argument(*flags, **kwargs)
        seconds = spec.get("seconds")
        add_video_options(parser, seconds=seconds)
        if seconds is None and name == "storyboard":
            parser.add_argument(
                "--seconds", type=float, default=None, help="duration (default: last card + 4 s)"
            )
        add_run_options(parser, spec.get("out", "output video: .mp4 or .gif"))
        parser.set_defaults(func=_runner(spec["build"]))


def _runner(build: Callable[[argparse.Namespace], GenerationRequest]) -> Callable:
    def run(args: argparse.Namespace) -> None:
        run_request(args, build(args))

    return run
