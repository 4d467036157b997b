"""The ``tenku`` command: parse arguments, build a request, call the library.

Each subcommand lives in its own module with an ``add_parser(subparsers)`` function that
registers it and sets ``func`` to the function that runs it. ``COMMANDS`` indexes them: ``tenku
--help`` is built from the index alone, and a command imports only its own module, so none
waits for another's imports (numpy, PyAV, C2PA, torch).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterable, Sequence

from tenku import __version__

# name -> (module in tenku.cli, the function there that registers it), in the order `tenku
# --help` lists them; some functions register several commands.
COMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("generate", "add_parser"),
    **dict.fromkeys(
        ("i2v", "keyframes", "extend", "connect", "fill", "recut", "loop", "remix"),
        ("tasks", "add_parsers"),
    ),
    **dict.fromkeys(("interpolate", "blend", "storyboard", "image"), ("tasks", "add_parsers")),
    "world": ("world", "add_parser"),
    "eval": ("eval", "add_parser"),
    "train": ("train", "add_parser"),
    "verify": ("verify", "add_parser"),
    "export": ("generate", "add_export_parser"),
    "moderate": ("moderate", "add_parser"),
    "models": ("models", "add_parser"),
    "serve": ("serve", "add_serve_parser"),
    "worker": ("serve", "add_worker_parser"),
    "keys": ("serve", "add_keys_parser"),
    **dict.fromkeys(("plans", "backup", "restore"), ("serve", "add_plans_parser")),
}
# name -> the one-line help its module registers (a test checks they agree), for `tenku --help`
SUMMARIES = {
    "generate": "generate a video from a text prompt",
    "i2v": "image to video: an image becomes the first frame (optionally a last one too)",
    "keyframes": "images placed at times (seconds) on the timeline; the rest is generated",
    "extend": "extend a video forward (or backward) by some seconds, following its motion",
    "connect": "join two clips with a generated transition",
    "fill": "regenerate a missing span of a video (START:END seconds)",
    "recut": "trim and reorder segments of a video, regenerating the seams",
    "loop": "a seamless loop: the last frame flows into the first",
    "remix": "video to video: change what the prompt changes, keep the motion",
    "interpolate": "raise a video's frame rate by generating in-between frames",
    "blend": "blend PROMPT into a second prompt (and two videos) along a weight curve",
    "storyboard": "one video through prompts placed on a timeline (long videos in windows)",
    "image": "generate a still image (one frame, saved as PNG)",
    "world": "the sandbox world: sample videos, render specs, write training sets",
    "eval": "score a video generator against the sandbox world's ground truth",
    "train": "train the default model (world), or the video VAE or the transformer alone",
    "verify": "check a video's C2PA manifest and invisible watermark",
    "export": "assemble a model folder from a trained VAE and transformer",
    "moderate": "check a prompt against the moderation policy",
    "models": "list the installed models and where they are",
    "serve": "serve OpenAI's Videos API and the web studio, with one worker",
    "worker": "run a worker on a serve data folder",
    "keys": "create, list and delete API keys",
    "plans": "create and list plans (quotas for API keys)",
    "backup": "copy the job database to one file (safe while serving)",
    "restore": "put a backup in place of the job database (stop servers first)",
}

DESCRIPTION = """\
tenku: an open, self-hostable video generator in the manner of Sora, with a sandbox
world whose ground truth is known, so every model can be measured.

Run `tenku COMMAND --help` for the options of each command."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows each option's default where it says something, and keeps the line breaks of
    descriptions and epilogs.

    No default is shown for on/off flags (``--quiet``'s False, ``--no-normalise``'s True only
    restate the flag), for options without one (None, empty), or where the help text already
    says it in its own words ("frames per second (default 8)").
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (
            action.nargs == 0  # a flag: store_true/false/const, count, help, version
            or action.default is None
            or action.default is argparse.SUPPRESS
            or action.default in ("", [], ())
            or "default" in text.lower()
        ):
            return action.help
        return super()._get_help_string(action)


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The ``tenku`` parser, every command in full; with ``commands``, only those in full and
    the others as the index's one-line help (enough for ``tenku --help``), importing only the
    modules of ``commands``."""
    parser = argparse.ArgumentParser(
        prog="tenku", description=DESCRIPTION, formatter_class=HelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"tenku {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    if commands is None:  # in full: each registering function once, in the index's order
        for module, function in dict.fromkeys(COMMANDS.values()):
            _register(sub, module, function)
        return parser
    for name in COMMANDS:
        sub.add_parser(name, help=SUMMARIES[name], add_help=False)
    for name in set(commands) & set(COMMANDS):
        module, function = COMMANDS[name]
        scratch = argparse.ArgumentParser(prog="tenku").add_subparsers()
        _register(scratch, module, function)
        sub.choices[name] = scratch.choices[name]
    return parser


def _register(sub: argparse._SubParsersAction, module: str, function: str) -> None:
    getattr(importlib.import_module(f"tenku.cli.{module}"), function)(sub, HelpFormatter)


def _command(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names: its first word that is not an option (tenku's own options,
    --help and --version, take no value)."""
    return next((word for word in argv if not word.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tenku`` console script; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = _command(argv)
    parser = build_parser([command] if command is not None else [])
    args = parser.parse_args(argv)
    try:
        status = args.func(args)  # None, or the exit status a command chose (tenku verify)
    except (
        ValueError,
        FileNotFoundError,
        FloatingPointError,
    ) as e:  # bad input: one clear line, no traceback
        print(f"tenku: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tenku: interrupted", file=sys.stderr)
        return 130
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    sys.exit(main())
