"""``tenku moderate "TEXT"``: the moderation decision on a prompt, as a line or as JSON."""

from __future__ import annotations

import argparse
import dataclasses
import json

MODERATE_EPILOG = """\
Examples:
  tenku moderate "a red ball bounces"
  tenku moderate "une femme n.u.e sur la plage" --json
  tenku moderate "Mickey Mouse waves" --policy my-policy.json

Exit status: 0 when the text is allowed, 1 when it is refused, 2 on bad input. The policy is
the shipped one (tenku/safety/data/policy.json) with --policy FILE, or else the file named by
$TENKU_MODERATION_POLICY, laid over it: turn categories off, change thresholds, add terms."""


def add_parser(commands: argparse._SubParsersAction, formatter: type) -> None:
    parser = commands.add_parser(
        "moderate",
        help="check a prompt against the moderation policy",
        description=(
            "Check a prompt against the moderation policy (sexual content, minors, graphic\n"
            "violence, self-harm, hate, real people, intellectual property; English and\n"
            "French) and print the decision: allowed or refused, the category and the reason."
        ),
        epilog=MODERATE_EPILOG,
        formatter_class=formatter,
    )
    parser.add_argument("text", help="the prompt to check")
    parser.add_argument(
        "--policy", default=None, help="operator policy file (JSON) laid over the shipped one"
    )
    parser.add_argument(
        "--rules-only", action="store_true", help="skip the semantic layer (no text encoder)"
    )
    parser.add_argument("--json", action="store_true", help="print the decision as one JSON object")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.set_defaults(func=cmd_moderate)


def cmd_moderate(args: argparse.Namespace) -> None:
    """Print the decision; exit with status 1 (``SystemExit``) when the text is refused."""
    from tenku.safety.moderation import Moderator
    from tenku.safety.policy import load_policy

    policy = load_policy(args.policy)
    if args.rules_only:
        policy = dataclasses.replace(policy, semantic=False)
    if args.threads is not None:
        import torch

        torch.set_num_threads(max(args.threads, 1))
    moderator = Moderator(policy)
    decision = moderator.check(args.text)
    if args.json:
        print(json.dumps(dataclasses.asdict(decision)))
    elif decision.allowed:
        print(f"allowed: {decision.reason}")
    else:
        assert decision.category is not None
        label = policy.category(decision.category).label
        print(f"refused ({label}): {decision.reason}")
    if not decision.allowed:
        raise SystemExit(1)
