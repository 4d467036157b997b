"""``tenku models``: the models tenku can load by name, and the model/GPU options of ``generate``.

:func:`add_backend_arguments` adds ``--dtype``, ``--offload``, ``--vae-tiling``,
``--vae-slicing``, ``--compile`` and ``--attention`` to a command; :func:`backend_kwargs` turns
them into :func:`tenku.pipelines.registry.load_backend`'s keyword arguments.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

MODELS_EPILOG = """\
A model is a folder: a native tenku model holds pipeline.json (`tenku export` writes one), a
diffusers model holds model_index.json (the layout of diffusers' save_pretrained, e.g.
Wan2.1-T2V-1.3B-Diffusers, LTX-Video, CogVideoX-2b). Put folders in the models directory
($TENKU_MODELS, default ~/.local/share/tenku/models) and pass their name to
`tenku generate --model NAME`, or pass any folder's path. See docs/models.md.

Examples:
  tenku models
  tenku models --json"""

# The option list is spelt out here (not imported from tenku.pipelines) so that `--help` does
# not import torch.
DTYPES = ("float32", "bfloat16", "float16")
OFFLOAD = ("none", "model", "sequential")
ATTENTION = ("auto", "math", "flash", "efficient", "cudnn", "sage", "flash-attn")


def add_parser(commands: argparse._SubParsersAction, formatter: type) -> None:
    parser = commands.add_parser(
        "models",
        help="list the installed models and where they are",
        description="List the models `tenku generate --model NAME` can load: the shipped "
        "default and the folders in the models directory, with their family and size.",
        epilog=MODELS_EPILOG,
        formatter_class=formatter,
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    parser.set_defaults(func=cmd_models)


def cmd_models(args: argparse.Namespace) -> None:
    from tenku.pipelines.registry import installed_models, models_dir

    models = installed_models()
    if args.json:
        rows = [
            {
                "name": m.name,
                "kind": m.kind,
                "family": m.family,
                "path": str(m.path),
                "size_bytes": m.size_bytes,
            }
            for m in models
        ]
        print(json.dumps({"models_dir": str(models_dir()), "models": rows}, indent=1))
        return
    width = max([len(m.name) for m in models] + [4])
    print(f"{'NAME':<{width}}  {'FAMILY':<10}  {'SIZE':>9}  PATH")
    for m in models:
        print(f"{m.name:<{width}}  {m.family:<10}  {m.size_bytes / 2**30:>7.2f}GB  {m.path}")
    print(f"\nmodels directory: {models_dir()} (set $TENKU_MODELS to move it)")


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """The GPU options of a command that loads a model (see :func:`backend_kwargs`)."""
    group = parser.add_argument_group(
        "model and GPU options",
        "How the model runs. Options that need CUDA (offload, compile, float16, attention "
        "kernels other than auto/math) are refused on a CPU with an error naming the option; "
        "offload, VAE tiling/slicing and the sage/flash-attn kernels apply to diffusers "
        "models only.",
    )
    group.add_argument(
        "--dtype",
        choices=DTYPES,
        default=None,
        help="weight precision (default: bfloat16 on CUDA, float32 on CPU; float16 needs CUDA)",
    )
    group.add_argument(
        "--offload",
        choices=OFFLOAD,
        default="none",
        help="keep weights in CPU memory and move them to the GPU when used: 'model' moves "
        "whole models in turn (small slowdown), 'sequential' layer by layer (least memory, "
        "slow); needs CUDA and a diffusers model",
    )
    group.add_argument(
        "--vae-tiling",
        action="store_true",
        help="decode the VAE in overlapping spatial tiles (lower peak memory at 480p and up; "
        "diffusers models)",
    )
    group.add_argument(
        "--vae-slicing",
        action="store_true",
        help="decode the VAE one video at a time (lower peak memory with --variations; "
        "diffusers models)",
    )
    group.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the transformer: the first step takes minutes, later ones run "
        "faster; needs CUDA",
    )
    group.add_argument(
        "--attention",
        choices=ATTENTION,
        default="auto",
        help="attention kernel: auto (torch picks), math, flash, efficient or cudnn (torch "
        "SDPA; all but math need CUDA), sage or flash-attn (diffusers models with the "
        "sageattention / flash-attn package installed)",
    )


def backend_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``load_backend`` keyword arguments from the options :func:`add_backend_arguments` adds."""
    return {
        "device": args.device,
        "dtype": args.dtype,
        "offload": args.offload,
        "vae_tiling": args.vae_tiling,
        "vae_slicing": args.vae_slicing,
        "compile": args.compile,
        "attention": args.attention,
    }
