"""The training loop shared by the VAE and the transformer.

One :class:`Trainer` owns the model, its EMA copy (``torch.optim.swa_utils``), AdamW with
warm-up + cosine decay, the checkpoint folder and the progress bar. A run writes into ``out``:

- ``state.pt``: everything needed to resume (model, EMA, optimiser, step, history, RNG);
- ``model/``: the EMA weights in fp16 safetensors with ``config.json`` (what gets shipped);
- ``history.json`` and ``loss.png``: the loss curve.

All are replaced atomically at every checkpoint, so killing a run loses at most
``checkpoint_every`` steps, and rerunning the same command resumes it. Batches are a pure
function of ``(seed, step)``, so a resumed run sees the same data as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from tenku.io import atomic_path
from tenku.train.presets import TrainPreset

StepFn = Callable[[int], tuple[Tensor, dict[str, float]]]  # step -> (loss, logged parts)


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` = CUDA when available, else CPU; ``cpu``/``cuda``/``cuda:N`` as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {name!r} asked for, but torch sees no CUDA device")
    return device


def pick_precision(name: str, device: torch.device) -> torch.dtype:
    """``auto`` = bf16 autocast on CUDA and on CPUs with AMX, fp32 elsewhere.

    On a CPU without AMX (AVX2 only) bf16 matmuls and convolutions run several times slower
    than fp32, so fp32 is the fast choice there.
    """
    if name == "auto":
        amx = "AMX" in torch.backends.cpu.get_cpu_capability()
        return torch.bfloat16 if device.type == "cuda" or amx else torch.float32
    if name not in ("bf16", "fp32"):
        raise ValueError(f"precision: {name!r} is not one of auto, bf16, fp32")
    return torch.bfloat16 if name == "bf16" else torch.float32


def hardware(device: torch.device) -> str:
    """A short description of where a run happened, for the model card."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} threads ({torch.backends.cpu.get_cpu_capability()})"


def lr_at(step: int, preset: TrainPreset) -> float:
    """Linear warm-up to ``lr``, then cosine decay to ``min_lr_ratio * lr`` at ``steps``."""
    if step < preset.warmup:
        return preset.lr * (step + 1) / preset.warmup
    span = max(preset.steps - preset.warmup, 1)
    progress = min((step - preset.warmup) / span, 1.0)
    low = preset.min_lr_ratio
    return preset.lr * (low + (1 - low) * 0.5 * (1 + math.cos(math.pi * progress)))


def step_rng(seed: int, step: int, stream: int = 0) -> np.random.Generator:
    """The random numbers of one step: a pure function of ``(seed, step, stream)``."""
    return np.random.default_rng([seed, step, stream])


def step_generator(seed: int, step: int, device: torch.device) -> torch.Generator:
    """A torch generator for one step (noise, times, dropout), seeded from ``(seed, step)``."""
    g = torch.Generator(device=device)
    g.manual_seed(int(step_rng(seed, step, 1).integers(2**62)))
    return g


def plot_history(history: list[dict[str, float]], path: Path, title: str) -> None:
    """Loss (and every other logged part) against step, log scale, raw and smoothed."""
    from matplotlib.figure import Figure  # lazy: matplotlib is slow to import

    keys = [k for k in history[0] if k not in ("step", "lr", "time")] if history else []
    cols = min(max(len(keys), 1), 4)
    rows = -(-max(len(keys), 1) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[len(keys) :]:
        ax.set_visible(False)
    steps = np.asarray([h["step"] for h in history])
    for ax, key in zip(axes, keys, strict=False):
        y = np.asarray([h[key] for h in history], dtype=np.float64)
        ax.plot(steps, y, lw=0.6, alpha=0.35, color="C0", label="raw")
        if len(y) >= 5:
            k = max(len(y) // 25, 1)
            smooth = np.convolve(y, np.ones(k) / k, mode="valid")
            ax.plot(steps[k - 1 :], smooth, lw=1.6, color="C0", label=f"mean of {k}")
        if np.all(y > 0):
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


class Trainer:
    """Owns one model's optimisation: AdamW, EMA, checkpoints, resume and progress."""

    def __init__(
        self,
        model: nn.Module,
        preset: TrainPreset,
        out: str | Path,
        *,
        device: torch.device,
        precision: torch.dtype = torch.float32,
        save: Callable[[nn.Module, Path, dict[str, Any]], None],
        progress: bool = True,
    ) -> None:
        self.preset = preset
        self.out = Path(out)
        self.device = device
        self.precision = precision
        self.save = save
        self.progress = progress
        self.model = model.to(device).train()
        decay, other = [], []  # weight decay on matrices, not on biases, norms or embeddings
        for name, p in model.named_parameters():
            (decay if p.ndim >= 2 and "embed" not in name else other).append(p)
        self.optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": preset.weight_decay},
                {"params": other, "weight_decay": 0.0},
            ],
            lr=preset.lr,
            betas=preset.betas,
            fused=device.type == "cuda",
        )
        self.ema = AveragedModel(
            model, multi_avg_fn=get_ema_multi_avg_fn(preset.ema_decay), use_buffers=True
        )
        self.ema.requires_grad_(False)
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.seconds = 0.0  # training time summed over every session of this run
        self.meta: dict[str, Any] = {}

    @property
    def state_path(self) -> Path:
        return self.out / "state.pt"

    def autocast(self) -> AbstractContextManager[Any]:
        if self.precision == torch.float32:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.precision)

    def resume(self) -> bool:
        """Load ``state.pt`` if there is one; refuse one written by another preset."""
        if not self.state_path.exists():
            return False
        state = torch.load(self.state_path, map_location=self.device, weights_only=False)
        if state["preset"] != asdict(self.preset):
            raise ValueError(
                f"out: {self.out} holds a run of another recipe "
                f"({state['preset']['kind']} preset {state['preset']['name']!r}); "
                "choose another folder"
            )
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.history = state["step"], state["history"]
        self.seconds, self.meta = state["seconds"], state.get("meta", {})
        return True

    def checkpoint(self) -> None:
        """Write state.pt, the EMA weights, history.json and loss.png (each atomically)."""
        self.out.mkdir(parents=True, exist_ok=True)
        state = {
            "preset": asdict(self.preset),
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "history": self.history,
            "seconds": self.seconds,
            "meta": self.meta,
        }
        with atomic_path(self.state_path) as tmp:
            torch.save(state, tmp)
        self.save(self.ema.module, self.out / "model", self.run_meta())
        with atomic_path(self.out / "history.json") as tmp:
            tmp.write_text(json.dumps(self.history))
        if self.history:
            title = f"tenku train {self.preset.kind} --preset {self.preset.name}"
            plot_history(self.history, self.out / "loss.png", title)

    def run_meta(self) -> dict[str, Any]:
        """What the model card needs: recipe, steps, time, hardware and any extra figures."""
        return {
            "command": f"tenku train {self.preset.kind} --preset {self.preset.name}",
            "preset": asdict(self.preset),
            "steps": self.step,
            "train_seconds": round(self.seconds, 1),
            "hardware": hardware(self.device),
            "precision": str(self.precision).removeprefix("torch."),
            "torch": torch.__version__,
            **self.meta,
        }

    def fit(self, step_fn: StepFn, *, steps: int | None = None) -> None:
        """Run ``step_fn`` from the current step up to ``steps`` (default: the preset's)."""
        total = self.preset.steps if steps is None else min(steps, self.preset.steps)
        bar = tqdm(
            total=self.preset.steps,
            initial=self.step,
            desc=f"train {self.preset.kind} {self.preset.name}",
            unit="step",
            disable=not self.progress,
            dynamic_ncols=True,
        )
        window: list[float] = []
        while self.step < total:
            start = time.perf_counter()
            lr = lr_at(self.step, self.preset)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            with self.autocast():
                loss, parts = step_fn(self.step)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {loss.item()} at step {self.step}")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.preset.grad_clip)
            self.optimizer.step()
            self.ema.update_parameters(self.model)
            self.step += 1
            elapsed = time.perf_counter() - start
            self.seconds += elapsed
            window = [*window[-19:], elapsed]
            record = {"step": self.step, "loss": loss.item(), "lr": lr, **parts}
            record["grad_norm"] = float(norm)
            self.history.append(record)
            samples_per_s = self.preset.batch_size / (sum(window) / len(window))
            bar.set_postfix(
                loss=f"{record['loss']:.4f}", lr=f"{lr:.1e}", sps=f"{samples_per_s:.1f}"
            )
            bar.update()
            if self.step % self.preset.checkpoint_every == 0 or self.step == total:
                self.checkpoint()
        bar.close()
