"""``tenku verify FILE``: is this video what tenku made? Manifest, watermark and a verdict."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# The exit status of each verdict (tenku.safety.verify.VERDICTS); 2 is the status of every
# `tenku` command given bad input (here: FILE or the --trust-anchors file does not exist).
EXIT_STATUS = {
    "authentic": 0,  # a valid manifest, trusted signer, unchanged since signing
    "tampered": 1,  # a manifest, but the file no longer matches it
    "watermark-only": 3,  # no valid manifest; tenku's invisible watermark found
    "nothing": 4,  # no manifest and no watermark: no provenance at all
    "untrusted": 5,  # a valid manifest, unchanged, but its signer is not trusted here
}
EXIT_HELP = """\
exit status:
  0  authentic: a valid manifest from a trusted signer, unchanged since signing
  1  tampered: a manifest is present but the file no longer matches it
  2  bad input: FILE or the --trust-anchors file does not exist
  3  watermark only: no valid manifest, tenku's invisible watermark found
  4  nothing found: no manifest and no watermark
  5  untrusted: a valid, unchanged manifest whose signer is not trusted here"""


def cmd_verify(args: argparse.Namespace) -> int:
    """Print the report; return the exit status of its verdict (``EXIT_STATUS``)."""
    from tenku.safety.invisible import DEFAULT_KEY
    from tenku.safety.verify import verify_video

    anchors = None
    if args.trust_anchors:
        anchors = Path(args.trust_anchors).read_text()
    key = DEFAULT_KEY if args.key is None else args.key
    report = verify_video(
        args.file, key=key, trust_anchors=anchors, watermark=not args.no_watermark
    )
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        print(_text(report.to_dict()))
    return EXIT_STATUS[report.verdict]


def _text(r: dict) -> str:
    m, w = r["manifest"], r["watermark"]
    lines = [f"file:      {r['path']}"]
    if m["present"]:
        lines.append(
            f"manifest:  present, state {m['state']}; valid {_yn(m['valid'])}, "
            f"trusted {_yn(m['trusted'])}, tampered {_yn(m['tampered'])}"
        )
        if m["failures"] or m["error"]:
            lines.append(f"  failures: {', '.join(m['failures']) or m['error']}")
        tenku = m["tenku"]
        lines.append(f"  signer:   {m['signer']}; claim generator {m['claim_generator']}")
        for action in m["actions"]:
            source = action.get("digitalSourceType", "").rsplit("/", 1)[-1]
            lines.append(f"  action:   {action.get('action')} ({source})")
        if tenku:
            lines.append(f"  model:    {tenku.get('model')}; video id {tenku.get('video_id')}")
            lines.append(f"  created:  {tenku.get('created')}")
            lines.append(f"  prompt:   sha256 {tenku.get('prompt_sha256')}")
        for ingredient in m["ingredients"]:
            lines.append(f"  source:   {ingredient['title']} ({ingredient['relationship']})")
    else:
        lines.append("manifest:  none")
    if w is None:
        reason = f" ({r['error']})" if r["error"] else ""
        lines.append(f"watermark: not checked{reason}")
    elif w["found"]:
        match = r["watermark_matches_manifest"]
        note = "" if match is None else f"; matches manifest {_yn(match)}"
        lines.append(
            f"watermark: payload {w['payload']}, confidence {w['confidence']:.2f}, "
            f"bit accuracy {w['bit_accuracy']:.2f}, scale {w['scale']:.2f}{note}"
        )
    else:
        lines.append(f"watermark: none found (best confidence {w['confidence']:.2f})")
    lines.append(f"verdict:   {r['verdict_line']}")
    return "\n".join(lines)


def _yn(value: bool) -> str:
    return "yes" if value else "no"


def add_parser(commands: argparse._SubParsersAction, formatter: type) -> None:
    p = commands.add_parser(
        "verify",
        help="check a video's C2PA manifest and invisible watermark",
        description="Read FILE's C2PA manifest (is one present; is it valid; is its signer "
        "trusted by the local CA or TENKU_TRUST_ANCHORS; was the file changed after signing), "
        "look for tenku's invisible watermark in its frames (payload and confidence), and end "
        "with a plain verdict; the exit status says which (below), so scripts can branch "
        "on it.",
        epilog="examples:\n"
        "  tenku verify out.mp4\n"
        "  tenku verify out.mp4 --json\n"
        "  tenku verify clip.mp4 --trust-anchors company-root.pem\n\n" + EXIT_HELP,
        formatter_class=formatter,
    )
    p.add_argument("file", metavar="FILE", help="the video to check (.mp4, .mov, .gif, ...)")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.add_argument(
        "--trust-anchors",
        metavar="PEM",
        help="root certificates (PEM) to trust instead of the local CA and TENKU_TRUST_ANCHORS",
    )
    p.add_argument(
        "--key",
        default=None,
        help="the invisible watermark's key, if the videos were marked with a custom one "
        "(default: tenku's own)",
    )
    p.add_argument(
        "--no-watermark",
        action="store_true",
        help="check only the manifest; skip decoding frames for the watermark",
    )
    p.set_defaults(func=cmd_verify)
