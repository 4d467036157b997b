"""Training throughput and MFU of the transformer and the VAE, fp32 vs bf16, side by side.

    python bench/train_throughput.py [--device cpu|cuda] [--dit world-xs] [--vae world]
                                     [--batch 8] [--steps 5] [--threads N]

Measures the matmul peak of this device first (a square ``torch.matmul`` in fp32 and bf16),
then times ``--steps`` optimiser steps (after one warm-up) of a transformer step on 33-frame
128x128 latents and of a VAE step on 9 x 64 x 64 crops, in fp32 and under bf16 autocast. FLOPs
per step are counted by ``torch.utils.flop_counter`` (matmuls, convolutions and attention,
forward and backward), so achieved TFLOP/s and its share of the measured bf16 peak (MFU) are
printed beside samples/s.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from contextlib import nullcontext

import torch
from torch.utils.flop_counter import FlopCounterMode

from tenku.diffusion.flow import flow_loss
from tenku.models.dit import DIT_PRESETS, DiT
from tenku.models.vae import VAE_PRESETS, VideoVAE, vae_loss


def matmul_peak(device: torch.device, dtype: torch.dtype, reps: int = 4) -> float:
    """Achieved FLOP/s of a square matmul in ``dtype`` (best of ``reps``): 2048 on a CPU,
    8192 on a GPU (smaller ones do not fill an H200)."""
    n = 8192 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(reps + 1):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def dit_step(name: str, batch: int, device: torch.device) -> tuple[torch.nn.Module, Callable]:
    model = DiT(DIT_PRESETS[name]).to(device)
    c = model.config.latent_channels  # the preset's (8); world-m feeds it 16
    x0 = torch.randn(batch, c, 9, 16, 16, device=device)  # 33 frames at 128 px
    text = torch.randn(batch, 16, model.config.text_dim, device=device)
    mask = torch.ones(batch, 16, dtype=torch.bool, device=device)
    pooled = torch.randn(batch, model.config.text_dim, device=device)

    def loss() -> torch.Tensor:
        return flow_loss(
            model,
            x0,
            extra_args={"text": text, "text_mask": mask, "pooled": pooled},
        )[0]

    return model, loss


def vae_step(name: str, batch: int, device: torch.device) -> tuple[torch.nn.Module, Callable]:
    model = VideoVAE(VAE_PRESETS[name]).to(device)
    x = torch.rand(batch, 3, 9, 64, 64, device=device) * 2 - 1

    def loss() -> torch.Tensor:
        recon, posterior = model(x)
        return vae_loss(recon, x, posterior)[0]

    return model, loss


def measure(
    build: Callable, batch: int, device: torch.device, dtype: torch.dtype, steps: int
) -> dict[str, float]:
    torch.manual_seed(0)
    model, loss_fn = build(batch, device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    cast = nullcontext() if dtype == torch.float32 else torch.autocast(device.type, dtype=dtype)

    def step() -> None:
        with cast:
            loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    flops = counter.get_total_flops()
    times = []
    for _ in range(steps):
        sync(device)
        start = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - start)
    seconds = sorted(times)[len(times) // 2]
    return {"s": seconds, "sps": batch / seconds, "flops": flops / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--dit", default="world-xs", choices=sorted(DIT_PRESETS))
    parser.add_argument("--vae", default="world", choices=sorted(VAE_PRESETS))
    parser.add_argument("--batch", type=int, default=8, help="samples per step (default 8)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps, median (default 5)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    peaks = {dt: matmul_peak(device, dt) for dt in (torch.float32, torch.bfloat16)}
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{where}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(
        f"matmul peak: fp32 {peaks[torch.float32] / 1e9:.0f} GFLOP/s, "
        f"bf16 {peaks[torch.bfloat16] / 1e9:.0f} GFLOP/s"
    )
    header = f"{'step':<22}{'dtype':<7}{'s/step':>8}{'samples/s':>11}{'GFLOP/s':>9}{'MFU bf16':>10}"
    print(header)
    builds = {
        f"dit {args.dit} b{args.batch}": lambda b, d: dit_step(args.dit, b, d),
        f"vae {args.vae} b{args.batch}": lambda b, d: vae_step(args.vae, b, d),
    }
    for name, build in builds.items():
        rows = {}
        for dtype in (torch.float32, torch.bfloat16):
            r = measure(build, args.batch, device, dtype, args.steps)
            rows[dtype] = r
            mfu = r["flops"] / peaks[torch.bfloat16]
            label = str(dtype).removeprefix("torch.")
            print(
                f"{name:<22}{label:<7}{r['s']:>8.3f}{r['sps']:>11.1f}"
                f"{r['flops'] / 1e9:>9.1f}{mfu:>10.1%}"
            )
        ratio = rows[torch.float32]["s"] / rows[torch.bfloat16]["s"]
        print(f"{name:<22}bf16 speed-up over fp32: {ratio:.2f}x")


if __name__ == "__main__":
    main()
