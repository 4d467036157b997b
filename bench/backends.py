"""What tenku's diffusers backend adds over calling diffusers' pipeline directly.

    python bench/backends.py            # Wan2.1-T2V-1.3B-sized, 832x480, 81 frames (CUDA only)
    python bench/backends.py --tiny     # the tiny Wan of tenku.pipelines.tiny, 64x64x9 (any device)

Builds a ``WanPipeline`` with random weights: the transformer at Wan2.1-T2V-1.3B's size (30
layers, width 1536, 12 heads, MLP 8960) and the full Wan VAE; the text encoder is a 2-layer
UMT5 of the real width 4096 (its cost is not part of a step, and umT5-XXL's 5.7B weights
would only fill memory). The same pipeline object then runs both ways, alternately, ``--runs``
times: ``pipe(...)`` directly, and ``DiffusersBackend.run(plan)``. Printed:

- one sampler step (two transformer forwards: guidance's pair), timed between step callbacks
  after a synchronise: the best and the median over runs (the best is the figure compared: on
  a shared machine the median carries other processes' load), and the whole call (prompt,
  3 steps, VAE decode);
- peak GPU memory of a call (``torch.cuda.max_memory_allocated``; on CPU: not measured).

Target (issue 8): the backend adds under 2% to a step. tenku requests are capped at 512 px a
side (``request.LIMITS``, the native model's range), so the bench widens the backend's plan to
832x480 directly.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from dataclasses import replace
from typing import Any

import torch

from tenku.pipelines import GenerationRequest
from tenku.pipelines.backend import BackendOptions
from tenku.pipelines.diffusers_backend import DiffusersBackend
from tenku.pipelines.tiny import build_wan, tiny_text_encoder, tiny_tokenizer

TARGET_OVERHEAD = 0.02
STEPS = 3
PROMPT = "a red ball bounces on a white background"
WAN_1_3B = {  # Wan-AI/Wan2.1-T2V-1.3B-Diffusers transformer/config.json
    "patch_size": (1, 2, 2),
    "num_attention_heads": 12,
    "attention_head_dim": 128,
    "in_channels": 16,
    "out_channels": 16,
    "text_dim": 4096,
    "freq_dim": 256,
    "ffn_dim": 8960,
    "num_layers": 30,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "rope_max_seq_len": 1024,
}


def build(tiny: bool, dtype: torch.dtype) -> tuple[object, tuple[int, int, int]]:
    """The pipeline (random weights, ``dtype``) and the ``(width, height, frames)`` it runs."""
    if tiny:
        return build_wan().to(dtype=dtype), (64, 64, 9)
    from diffusers import (
        AutoencoderKLWan,
        FlowMatchEulerDiscreteScheduler,
        WanPipeline,
        WanTransformer3DModel,
    )

    tokenizer = tiny_tokenizer()
    pipe = WanPipeline(
        tokenizer=tokenizer,
        text_encoder=tiny_text_encoder(len(tokenizer), umt5=True, width=4096),
        transformer=WanTransformer3DModel(**WAN_1_3B),
        vae=AutoencoderKLWan(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0),
    )
    return pipe.to(dtype=dtype), (832, 480, 81)


def timed(device: torch.device, call) -> dict[str, Any]:
    """Run ``call(on_step)``: the times between step ends (steps 2 and 3: no first-step setup
    in them), of the whole call, and its peak GPU memory."""
    marks: list[float] = []

    def on_step(*_: object) -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        marks.append(time.perf_counter())

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    call(on_step)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    total = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {
        "steps_s": [b - a for a, b in itertools.pairwise(marks)],
        "call_s": total,
        "peak_gb": peak,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny Wan at 64x64x9 (runs on CPU)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each way")
    parser.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="cuda, cuda:N or cpu (--tiny only)",
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    args = parser.parse_args()
    device = torch.device(args.device)
    if not args.tiny and device.type != "cuda":
        print(
            "bench/backends.py: the Wan-1.3B size at 832x480x81 needs a CUDA device "
            f"(got {device}; torch.cuda.is_available() is {torch.cuda.is_available()}); "
            "run with --tiny on this machine",
            file=sys.stderr,
        )
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    options = BackendOptions()
    dtype = options.torch_dtype(device)
    torch.manual_seed(0)
    pipe, (width, height, frames) = build(args.tiny, dtype)
    pipe.set_progress_bar_config(disable=True)
    backend = DiffusersBackend(
        pipe, name="wan-bench", family="wan", folder_class="WanPipeline", device=device
    )
    plan = backend.plan(GenerationRequest(PROMPT, width=64, height=64, steps=STEPS, seed=0))
    plan = replace(plan, width=width, height=height, frames=frames)

    def direct(on_step) -> None:
        def step_end(p, i, t, tensors):
            on_step()
            return tensors

        with torch.inference_mode():
            pipe(
                prompt=PROMPT,
                height=height,
                width=width,
                num_frames=frames,
                num_inference_steps=STEPS,
                guidance_scale=plan.request.guidance,
                generator=torch.Generator("cpu").manual_seed(0),
                output_type="np",
                callback_on_step_end=step_end,
            )

    def wrapped(on_step) -> None:
        backend.run(plan, callback=lambda done, total: on_step())

    ways = {"diffusers": direct, "tenku": wrapped}
    for call in ways.values():  # warm-up: kernels, allocator
        timed(device, call)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in ways}
    for _ in range(args.runs):
        for name, call in ways.items():
            results[name].append(timed(device, call))

    params = sum(p.numel() for p in pipe.transformer.parameters()) / 1e6
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"Wan transformer {params:,.2f}M params, {width}x{height}x{frames}, {dtype}, {device} "
        f"({name}), {STEPS} steps, {args.runs} runs each, alternating"
    )
    best = {}
    for way, runs in results.items():
        steps = [s for r in runs for s in r["steps_s"]]
        best[way] = min(steps)
        peaks = [r["peak_gb"] for r in runs if r["peak_gb"] is not None]
        peak = f"{max(peaks):.2f} GB" if peaks else "n/a (CPU)"
        print(
            f"  {way:<10} step best {best[way] * 1e3:8.1f} ms, median "
            f"{statistics.median(steps) * 1e3:8.1f} ms   call median "
            f"{statistics.median(r['call_s'] for r in runs):7.2f} s   peak {peak}"
        )
    overhead = best["tenku"] / best["diffusers"] - 1
    verdict = "meets" if overhead < TARGET_OVERHEAD else "misses"
    print(f"  tenku adds {overhead * 100:+.2f}% to the best step ({verdict} the <2% target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
