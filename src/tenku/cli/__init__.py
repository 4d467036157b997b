"""The ``tenku`` command: parse arguments, build a request, call the library.

Each subcommand lives in its own module with an ``add_parser(subparsers)`` function that
registers it and sets ``func`` to the function that runs it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tenku import __version__
from tenku.cli import eval as eval_cmd
from tenku.cli import generate, models, train, world
from tenku.cli import moderate as moderate_cmd
from tenku.cli import serve as serve_cmd
from tenku.cli import tasks as task_cmds
from tenku.cli import verify as verify_cmd

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tenku", description=DESCRIPTION, formatter_class=HelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"tenku {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    generate.add_parser(commands, HelpFormatter)
    task_cmds.add_parsers(commands, HelpFormatter)
    world.add_parser(commands, HelpFormatter)
    eval_cmd.add_parser(commands, HelpFormatter)
    train.add_parser(commands, HelpFormatter)
    verify_cmd.add_parser(commands, HelpFormatter)
    generate.add_export_parser(commands, HelpFormatter)
    moderate_cmd.add_parser(commands, HelpFormatter)
    models.add_parser(commands, HelpFormatter)
    serve_cmd.add_serve_parser(commands, HelpFormatter)
    serve_cmd.add_worker_parser(commands, HelpFormatter)
    serve_cmd.add_keys_parser(commands, HelpFormatter)
    serve_cmd.add_plans_parser(commands, HelpFormatter)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tenku`` console script; returns the exit status."""
    parser = build_parser()
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
