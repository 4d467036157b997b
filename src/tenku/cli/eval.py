"""``tenku eval``: measure a video source against the sandbox world's ground truth."""

from __future__ import annotations

import argparse
from pathlib import Path

from tenku.cli.world import parse_size
from tenku.eval.corruptions import CORRUPTIONS
from tenku.eval.suites import SPLITS, SUITES, build_suite

GROUND_TRUTH_SIZES = ("64x64", "128x128", "224x128")  # 1:1 small, 1:1, ~16:9
GROUND_TRUTH_FLOOR = 0.99  # every metric of the uncorrupted ground truth scores at least this


def cmd_eval(args: argparse.Namespace) -> None:
    # heavy imports (scipy, matplotlib) here, so that `tenku --help` and the other
    # commands start fast
    from tenku.eval.metrics import METRICS
    from tenku.eval.report import write_report
    from tenku.eval.runner import (
        command,
        evaluate,
        ground_truth,
        model_source,
        normalise,
        reference_sources,
        summarise,
    )

    given = [args.ground_truth, args.command is not None, args.model is not None]
    if sum(given) != 1:
        raise ValueError("source: give exactly one of --ground-truth, --command or --model")
    if args.corrupt and not args.ground_truth:
        raise ValueError("corrupt: applies to --ground-truth only")
    if (args.steps is not None or args.guidance is not None) and args.model is None:
        raise ValueError("steps: --steps and --guidance apply to --model only")
    sizes = (
        args.size
        or [parse_size(s) for s in GROUND_TRUTH_SIZES if args.ground_truth]
        or [(128, 128)]
    )
    if args.ground_truth:
        source = ground_truth(args.corrupt)
        name = f"ground truth{f' ({args.corrupt})' if args.corrupt else ''}"
    elif args.command is not None:
        source, name = command(args.command), f"command {args.command!r}"
    else:
        from tenku.pipelines import TenkuPipeline

        pipe = TenkuPipeline.from_pretrained(None if args.model == "default" else args.model)
        source = model_source(pipe, steps=args.steps, guidance=args.guidance)
        name = f"model {pipe.name}"
    progress = not args.quiet
    overall: dict[str, dict[str, float]] = {}
    for width, height in sizes:
        tag = f"{width}x{height}"
        items = build_suite(
            args.suite,
            width=width,
            height=height,
            frames=args.frames,
            fps=args.fps,
            seed=args.seed,
            splits=tuple(args.splits),
        )
        out = Path(args.out) / tag
        results = evaluate(items, source, out, progress=progress, desc=f"eval {tag}")
        summary = summarise(results)
        normalised, refs = None, {}
        if args.normalise:
            runs = {"ground_truth": ground_truth(), **reference_sources()}
            for ref, src in runs.items():
                ref_results = evaluate(
                    items, src, out / "references" / ref, progress=progress, desc=f"{ref} {tag}"
                )
                refs[ref] = summarise(ref_results)
            normalised = normalise(summary, refs, refs["ground_truth"])
        meta = {"source": name, "suite": args.suite, "size": tag, "frames": args.frames}
        meta |= {"fps": args.fps, "seed": args.seed}
        paths = write_report(
            out,
            summary,
            results,
            normalised=normalised,
            references=refs,
            meta=meta,
            title=f"tenku world benchmark: {name}, {args.suite} suite, {tag}",
        )
        overall[tag] = summary["overall"]
        print(f"{tag}: {summary['items']} videos -> {paths['markdown']}")
    _print_table(overall, METRICS)
    if args.ground_truth and not args.corrupt:
        low = [
            f"{k} {100 * v:.1f}% at {tag}"
            for tag, scores in overall.items()
            for k, v in scores.items()
            if k in METRICS and v < GROUND_TRUTH_FLOOR
        ]
        verdict = "PASS" if not low else "FAIL: " + ", ".join(low)
        floor = f"{100 * GROUND_TRUTH_FLOOR:.0f}%"
        where = ", ".join(overall)
        print(f"ground truth through H.264: every metric >= {floor} at {where}: {verdict}")


def _print_table(overall: dict[str, dict[str, float]], names: tuple[str, ...]) -> None:
    from tenku.eval.metrics import RATES

    tags = list(overall)
    print(f"{'metric':<18}" + "".join(f"{t:>10}" for t in tags))
    for k in (*names, *RATES):
        if any(k in overall[t] for t in tags):
            cells = "".join(
                f"{100 * overall[t][k]:>9.1f}%" if k in overall[t] else f"{'-':>10}" for t in tags
            )
            print(f"{k:<18}{cells}")


def add_parser(commands: argparse._SubParsersAction, formatter: type) -> None:
    p = commands.add_parser(
        "eval",
        help="score a video generator against the sandbox world's ground truth",
        description="Run a video source over a prompt suite, perceive every video, score it "
        "against the scene each prompt asked for (docs/benchmark.md), and write a report: "
        "results.json, summary.md, metrics.png and contact_sheet.png per size.",
        epilog="examples:\n"
        "  tenku eval --model --out report/default\n"
        "  tenku eval --ground-truth --out report/gt\n"
        "  tenku eval --ground-truth --corrupt mirror --size 128x128 --out report/mirror\n"
        "  tenku eval --command 'mygen {prompt} --seed {seed} --size {size} -o {output}' "
        "--out report/mygen",
        formatter_class=formatter,
    )
    p.add_argument("--out", required=True, help="report folder (one subfolder per size)")
    p.add_argument(
        "--ground-truth",
        action="store_true",
        help="score the world's own renders through an H.264 round trip (the ceiling); "
        f"default sizes {', '.join(GROUND_TRUTH_SIZES)}",
    )
    p.add_argument(
        "--corrupt",
        choices=sorted(CORRUPTIONS),
        help="with --ground-truth: break each video in a known way first",
    )
    p.add_argument(
        "--command",
        help="shell template run per prompt; fields {prompt} {seed} {width} {height} {size} "
        "{frames} {fps} {seconds} {output} (shell-quoted); it must write an mp4 to {output}",
    )
    p.add_argument(
        "--model",
        nargs="?",
        const="default",
        default=None,
        metavar="DIR",
        help="generate with the native model in-process: the shipped default, or a model "
        "folder written by `tenku export`",
    )
    p.add_argument("--steps", type=int, default=None, help="with --model: sampler steps")
    p.add_argument("--guidance", type=float, default=None, help="with --model: guidance scale")
    p.add_argument(
        "--suite",
        choices=sorted(SUITES),
        default="quick",
        help="items per split: " + ", ".join(f"{k} {v}" for k, v in SUITES.items()),
    )
    p.add_argument("--splits", nargs="+", choices=SPLITS, default=list(SPLITS), help="splits")
    p.add_argument(
        "--size",
        type=parse_size,
        nargs="+",
        metavar="WxH",
        help="output sizes (default 128x128, or the three ground-truth sizes)",
    )
    p.add_argument("--frames", type=int, default=17, help="frames per video")
    p.add_argument("--fps", type=float, default=8.0, help="frames per second")
    p.add_argument("--seed", type=int, default=0, help="suite seed (same seed, same prompts)")
    p.add_argument(
        "--no-normalise",
        dest="normalise",
        action="store_false",
        help="skip the reference runs (ground truth and trivial baselines) for normalised scores",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_eval)
