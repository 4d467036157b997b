"""Generation speed and memory of the shipped default model, and tenku's transformer side by side
with diffusers' WanTransformer3DModel.

    python bench/generate.py [--runs 3] [--threads 2] [--model DIR] [--no-peer]

Prints, for a default clip (4 s, 128x128, 8 fps, the model's default steps and guidance):

- cold start: a fresh Python process importing tenku and loading the pipeline (transformer,
  VAE and text encoder, up to a first prompt encoded), in seconds;
- wall time to generate: text encoding + sampling + VAE decoding, median of ``--runs``
  after one warm-up, against the clip's own duration (faster than real time < 1.0);
- peak memory: the maximum resident set size of that fresh process after one generation;
- one transformer forward at the same token count and batch (2: guidance's pair), tenku's
  DiT against ``diffusers.WanTransformer3DModel`` built with the same width, depth, heads,
  MLP width, patch and dtype, timed alternately in this one process (median of ``--runs``).

Targets (issue 4): under 4 s for the clip, cold start under 5 s, peak memory under 2 GB, and
tenku's forward at least as fast as Wan's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch
from tqdm import tqdm

TARGETS = {"generate_s": 4.0, "cold_start_s": 5.0, "peak_rss_gb": 2.0}
PROMPT = "a red ball bounces on a white background"

COLD = """
import json, resource, sys, time
t0 = time.perf_counter()
import torch
torch.set_num_threads({threads})
from tenku.pipelines import GenerationRequest, TenkuPipeline
t_import = time.perf_counter() - t0
pipe = TenkuPipeline.from_pretrained({model!r})
pipe.encode_prompt(["warm up the text encoder"])
t_load = time.perf_counter() - t0
(video,) = pipe.generate(GenerationRequest({prompt!r}, seed=0))
t_first = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB -> GiB
print(json.dumps({{"import_s": t_import, "cold_start_s": t_load, "first_video_s": t_first,
                  "peak_rss_gb": rss, "frames": list(video.frames.shape)}}))
"""


def cold_start(threads: int, model: str | None) -> dict[str, float]:
    code = COLD.format(threads=threads, model=model, prompt=PROMPT)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def generate_times(runs: int, model: str | None) -> tuple[list[float], dict[str, float], float]:
    from tenku.pipelines import GenerationRequest, TenkuPipeline

    pipe = TenkuPipeline.from_pretrained(model)
    request = GenerationRequest(PROMPT, seed=0)
    pipe.generate(request)  # warm-up (and the text encoder's first load)
    times, parts = [], {}
    for i in tqdm(range(runs), desc="generate 4 s clip", unit="run"):
        start = time.perf_counter()
        (video,) = pipe.generate(GenerationRequest(f"{PROMPT} #{i}", seed=i))  # new prompt
        times.append(time.perf_counter() - start)
        parts = video.timings
    return times, parts, (request.frames - 1) / request.fps


def forward_side_by_side(runs: int, model: str | None, dtype: torch.dtype) -> dict[str, float]:
    from diffusers import WanTransformer3DModel

    from tenku.models.dit import DiT
    from tenku.pipelines import GenerationRequest, TenkuPipeline

    pipe = TenkuPipeline.from_pretrained(model)
    ours: DiT = pipe.transformer.to(dtype)
    cfg = ours.config
    wan = (
        WanTransformer3DModel(
            patch_size=cfg.patch_size,
            num_attention_heads=cfg.heads,
            attention_head_dim=cfg.dim // cfg.heads,
            in_channels=cfg.latent_channels,
            out_channels=cfg.latent_channels,
            text_dim=cfg.text_dim,
            freq_dim=256,
            ffn_dim=int(cfg.dim * cfg.mlp_ratio),
            num_layers=cfg.depth,
        )
        .to(dtype)
        .eval()
    )
    c, t, h, w = pipe.latent_shape(GenerationRequest(PROMPT))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, c, t, h, w, generator=g).to(dtype)
    text = torch.randn(2, 16, cfg.text_dim, generator=g).to(dtype)
    mask = torch.ones(2, 16, dtype=torch.bool)
    steps = torch.tensor([500.0, 500.0])

    def run_ours() -> None:
        ours(x, steps / 1000, text, mask)

    def run_wan() -> None:
        wan(x, steps, text, return_dict=False)

    timings: dict[str, list[float]] = {"tenku": [], "wan": []}
    with torch.inference_mode():
        run_ours(), run_wan()  # warm-up
        for _ in tqdm(range(runs), desc="forward side by side", unit="pair"):
            for name, fn in (("tenku", run_ours), ("wan", run_wan)):
                start = time.perf_counter()
                fn()
                timings[name].append(time.perf_counter() - start)
    tokens = (t // cfg.patch_size[0]) * (h // cfg.patch_size[1]) * (w // cfg.patch_size[2])
    return {
        "tokens": tokens,
        "tenku_params_m": sum(p.numel() for p in ours.parameters()) / 1e6,
        "wan_params_m": sum(p.numel() for p in wan.parameters()) / 1e6,
        "tenku_s": statistics.median(timings["tenku"]),
        "wan_s": statistics.median(timings["wan"]),
    }


def verdict(ok: bool) -> str:
    return "meets target" if ok else "MISSES target"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs (median reported)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--model", default=None, help="model folder (default: shipped)")
    parser.add_argument(
        "--dtype", choices=("float32", "bfloat16"), default="float32", help="forward dtype"
    )
    parser.add_argument("--no-peer", action="store_true", help="skip the diffusers comparison")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cpu = torch.backends.cpu.get_cpu_capability()
    print(f"torch {torch.__version__}, {args.threads} threads, {cpu}")

    cold = cold_start(args.threads, args.model)
    print(
        f"cold start (import {cold['import_s']:.2f} s + load): {cold['cold_start_s']:.2f} s "
        f"[target < {TARGETS['cold_start_s']:g} s: {verdict(cold['cold_start_s'] < 5)}]"
    )
    print(
        f"peak memory after one generation: {cold['peak_rss_gb']:.2f} GB "
        f"[target < {TARGETS['peak_rss_gb']:g} GB: {verdict(cold['peak_rss_gb'] < 2)}]"
    )
    times, parts, seconds = generate_times(args.runs, args.model)
    median = statistics.median(times)
    split = ", ".join(f"{k} {v:.2f} s" for k, v in parts.items())
    print(
        f"generate a {seconds:g} s 128x128 clip: median {median:.2f} s over {args.runs} runs "
        f"({split}); {median / seconds:.2f}x real time "
        f"[target < {TARGETS['generate_s']:g} s: {verdict(median < 4)}]"
    )
    if not args.no_peer:
        dtype = getattr(torch, args.dtype)
        f = forward_side_by_side(args.runs, args.model, dtype)
        ratio = f["wan_s"] / f["tenku_s"]
        print(
            f"one forward, batch 2 x {f['tokens']} tokens, {args.dtype}: "
            f"tenku {f['tenku_s'] * 1e3:.0f} ms "
            f"({f['tenku_params_m']:.1f} M params) vs diffusers WanTransformer3DModel "
            f"{f['wan_s'] * 1e3:.0f} ms ({f['wan_params_m']:.1f} M); tenku is {ratio:.2f}x Wan's "
            f"speed [target >= 1.0: {verdict(ratio >= 1.0)}]"
        )


if __name__ == "__main__":
    main()
