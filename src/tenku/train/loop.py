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


def cpu_has_bf16() -> bool:
    """True when the CPU computes bf16 natively (``avx512_bf16`` or ``amx_bf16`` flags)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        info = ""
    flags = set(info.split())
    return bool(flags & {"avx512_bf16", "amx_bf16"}) or "AMX" in (
        torch.backends.cpu.get_cpu_capability()
    )


def pick_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: ``bf16``, ``fp32``, or for ``auto`` what suits ``device``.

    ``auto`` is bf16 on CUDA and fp32 on a CPU without native bf16. On a CPU with it
    (``avx512_bf16`` / AMX) the answer depends on the model: measured on a Zen 4, bf16 made a
    convolutional VAE step 2.1x faster and a small transformer step 2x slower (its time is
    elementwise work, and autocast adds casts). So ``auto`` returns None there, and the
    :class:`Trainer` times a step both ways and keeps the faster (:meth:`Trainer.settle_precision`).
    """
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16
        return None if cpu_has_bf16() else torch.float32
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


def lr_at(step: int, preset: TrainPreset, progress: float | None = None) -> float:
    """Linear warm-up to ``lr``, then cosine decay to ``min_lr_ratio * lr`` at ``steps``.

    ``progress`` in [0, 1] replaces ``step / steps`` after the warm-up: a run with a wall-clock
    budget passes the share of its time spent.
    """
    if step < preset.warmup:
        return preset.lr * (step + 1) / preset.warmup
    if progress is None:
        progress = (step - preset.warmup) / max(preset.steps - preset.warmup, 1)
    progress = min(max(progress, 0.0), 1.0)
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
    """Every logged part against step, log scale, raw and smoothed: one panel per key.

    Records may log different keys (the phases of ``tenku train world``); each panel plots
    the records that hold its key.
    """
    from matplotlib.figure import Figure  # lazy: matplotlib is slow to import

    keys = list(dict.fromkeys(k for h in history for k in h if k not in ("step", "lr", "time")))
    cols = min(max(len(keys), 1), 4)
    rows = -(-max(len(keys), 1) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[len(keys) :]:
        ax.set_visible(False)
    for ax, key in zip(axes, keys, strict=False):
        steps = np.asarray([h["step"] for h in history if key in h])
        y = np.asarray([h[key] for h in history if key in h], dtype=np.float64)
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
        precision: torch.dtype | None = torch.float32,
        save: Callable[[nn.Module, Path, dict[str, Any]], None],
        progress: bool = True,
    ) -> None:
        self.preset = preset
        self.out = Path(out)
        self.device = device
        self.precision = precision  # None: measured by settle_precision before the first step
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

    def autocast(self, dtype: torch.dtype | None = None) -> AbstractContextManager[Any]:
        dtype = dtype or self.precision or torch.float32
        if dtype == torch.float32:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def settle_precision(self, step_fn: StepFn, repeats: int = 2) -> torch.dtype:
        """Keep ``precision``, or when it is None time ``step_fn`` (forward + backward, no
        update) in fp32 and in bf16 autocast and keep the faster; the figures go in the meta."""
        if self.precision is not None:
            return self.precision
        seconds = {}
        for dtype in (torch.float32, torch.bfloat16):
            times = []
            for _ in range(repeats + 1):  # the first call warms up
                start = time.perf_counter()
                with self.autocast(dtype):
                    loss, _ = step_fn(self.step)
                loss.backward()
                times.append(time.perf_counter() - start)
            self.optimizer.zero_grad(set_to_none=True)
            seconds[str(dtype).removeprefix("torch.")] = round(min(times[1:]), 4)
        self.precision = (
            torch.bfloat16 if seconds["bfloat16"] < seconds["float32"] else torch.float32
        )
        self.meta["precision_measured_s_per_step"] = seconds
        return self.precision

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
            "precision": str(self.precision or "auto").removeprefix("torch."),
            "torch": torch.__version__,
            **self.meta,
        }

    def fit(
        self,
        step_fn: StepFn,
        *,
        steps: int | None = None,
        budget_s: float | None = None,
        checkpoint_s: float | None = None,
    ) -> None:
        """Run ``step_fn`` from the current step up to ``steps`` (default: the preset's).

        With ``budget_s`` the run stops when that many seconds of this call are spent instead
        (after one step at least),
        and the learning rate decays over the time (not the steps); ``checkpoint_s`` adds a
        checkpoint whenever that many seconds passed since the last.
        """
        total = self.preset.steps if steps is None else min(steps, self.preset.steps)
        self.settle_precision(step_fn)
        bar = tqdm(
            total=None if budget_s else self.preset.steps,
            initial=self.step,
            desc=f"train {self.preset.kind} {self.preset.name}",
            unit="step",
            disable=not self.progress,
            dynamic_ncols=True,
        )
        window: list[float] = []
        began = last_save = time.perf_counter()
        first = self.step
        while True:
            spent = time.perf_counter() - began
            if budget_s is None and self.step >= total:
                break
            if budget_s is not None and spent >= budget_s and self.step > first:
                break  # a budgeted run takes at least one step, however short its budget
            start = time.perf_counter()
            progress = None if budget_s is None else min(spent / max(budget_s, 1e-9), 1.0)
            lr = lr_at(self.step, self.preset, progress)
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
            record["time"] = round(self.seconds, 3)
            self.history.append(record)
            samples_per_s = self.preset.batch_size / (sum(window) / len(window))
            bar.set_postfix(
                loss=f"{record['loss']:.4f}", lr=f"{lr:.1e}", sps=f"{samples_per_s:.1f}"
            )
            bar.update()
            due = self.step % self.preset.checkpoint_every == 0
            if checkpoint_s is not None and time.perf_counter() - last_save >= checkpoint_s:
                due = True
            if due or (budget_s is None and self.step == total):
                self.checkpoint()
                last_save = time.perf_counter()
        if budget_s is not None:
            self.checkpoint()
        bar.close()
