"""``tenku train vae``: the causal video VAE on random crops of rendered world clips.

Each step draws one shard of the dataset (rendered on the fly from its preset, or read from a
folder written by ``tenku world dataset``) and cuts ``batch_size`` random crops of
``crop_frames`` x ``crop_size`` x ``crop_size`` from its clips. A shard serves
``shard_size / batch_size`` steps before the next one is drawn. After training, the latent
statistics of held-out clips set the config's ``shift_factor`` and ``scaling_factor`` (so the
diffusion model sees unit-variance latents) and their reconstruction PSNR goes in the meta.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from tenku.models.vae import VAE_PRESETS, VideoVAE, colour_weights, to_model_input, vae_loss
from tenku.train.loop import Trainer, step_generator, step_rng
from tenku.train.presets import TrainPreset
from tenku.world.dataset import WorldDataset, get_preset
from tenku.world.render import render
from tenku.world.sample import SamplerConfig, sample_scene

HELDOUT_SEED = 7_000_001  # held-out clips come from a seed no dataset preset uses


def heldout_clips(
    n: int, *, width: int = 128, height: int = 128, frames: int = 17, seed: int = HELDOUT_SEED
) -> np.ndarray:
    """``n`` fresh world clips ``(n, T, H, W, 3)`` uint8 that no training set contains."""
    rng = np.random.default_rng(seed)
    cfg = SamplerConfig(width=width, height=height, frames=frames)
    return np.stack([render(sample_scene(rng, cfg)) for _ in range(n)])


def psnr_from_mse(mse: float) -> float:
    """PSNR in dB of videos in [-1, 1] (peak-to-peak 2) from their mean squared error."""
    return 10 * math.log10(4.0 / max(mse, 1e-10))


@torch.no_grad()
def evaluate_vae(vae: VideoVAE, clips: np.ndarray, *, batch: int = 4) -> dict[str, float]:
    """Reconstruction PSNR (dB) and latent mean/std over ``clips`` ``(N, T, H, W, 3)`` uint8.

    ``psnr_objects`` is the PSNR over saturated pixels only (chroma >= 0.5: the objects).
    """
    device = next(vae.parameters()).device
    mses, zs, obj_err, obj_n = [], [], 0.0, 0
    for i in range(0, len(clips), batch):
        x = to_model_input(clips[i : i + batch]).to(device)
        z = vae.encode(x).mode()
        rec = vae.decode(z).clamp(-1, 1)
        err = (rec - x).square()  # (B, 3, T, H, W)
        mses.append(err.mean(dim=(1, 2, 3, 4)).cpu())
        objects = colour_weights(x, 1.0) >= 2.0  # (B, 1, T, H, W): chroma >= 0.5
        obj_err += err.mean(dim=1, keepdim=True)[objects].sum().item()
        obj_n += int(objects.sum())
        zs.append(z.float().cpu())
    mse = torch.cat(mses)
    z = torch.cat([t.flatten() for t in zs])
    return {
        "psnr": psnr_from_mse(mse.mean().item()),
        "psnr_min_clip": psnr_from_mse(mse.max().item()),
        "psnr_objects": psnr_from_mse(obj_err / max(obj_n, 1)),
        "latent_mean": z.mean().item(),
        "latent_std": z.std().item(),
    }


class CropSampler:
    """Batches of random crops, a pure function of the step (so resuming repeats the data)."""

    def __init__(self, preset: TrainPreset, data: str | Path | None, spatial: int):
        self.preset = preset
        self.spatial = spatial
        source = get_preset(preset.data) if data is None else data
        self.dataset = WorldDataset(source, shuffle=False)
        shard_size = max(s["videos"] for s in self.dataset.shards)
        # each shard serves 4 passes' worth of random crops: rendering a shard costs about
        # as much as 8 steps of the world VAE, so drawing one per pass halved the speed
        self.steps_per_shard = 4 * max(shard_size // preset.batch_size, 1)
        self._cached: tuple[int, np.ndarray] | None = None

    def shard(self, step: int) -> np.ndarray:
        rng = step_rng(self.preset.seed, step // self.steps_per_shard, 2)
        k = int(rng.integers(len(self.dataset.shards)))
        if self._cached is None or self._cached[0] != k:
            videos, _, _ = self.dataset.load_shard(self.dataset.shards[k])
            self._cached = (k, videos)
        return self._cached[1]

    def __call__(self, step: int) -> np.ndarray:
        """``(B, crop_frames, crop, crop, 3)`` uint8 crops for ``step``."""
        videos = self.shard(step)
        n, t, h, w, _ = videos.shape
        p, s = self.preset, self.spatial
        frames, crop = min(p.crop_frames, 1 + (t - 1) // 4 * 4), min(p.crop_size, h, w)
        rng = step_rng(p.seed, step, 3)
        out = []
        for _ in range(p.batch_size):
            i = int(rng.integers(n))
            t0 = int(rng.integers(t - frames + 1))
            y = int(rng.integers((h - crop) // s + 1)) * s
            x = int(rng.integers((w - crop) // s + 1)) * s
            out.append(videos[i, t0 : t0 + frames, y : y + crop, x : x + crop])
        return np.stack(out)


def save_vae(model: nn.Module, directory: Path, meta: dict[str, Any]) -> None:
    assert isinstance(model, VideoVAE)
    model.save_pretrained(directory, meta=meta)


def train_vae(
    preset: TrainPreset,
    out: str | Path,
    *,
    data: str | Path | None = None,
    device: torch.device,
    precision: torch.dtype | None = torch.float32,
    steps: int | None = None,
    eval_clips: int = 32,
    progress: bool = True,
) -> Trainer:
    """Train (or resume) the VAE of ``preset`` into ``out``; returns the finished trainer.

    ``steps`` stops early at that step (the run can be resumed later); ``eval_clips`` held-out
    clips at the dataset's first bucket size measure PSNR and set the latent scaling.
    """
    torch.manual_seed(preset.seed)
    vae = VideoVAE(VAE_PRESETS[preset.model])
    trainer = Trainer(
        vae, preset, out, device=device, precision=precision, save=save_vae, progress=progress
    )
    if trainer.resume() and "scaling_factor" in trainer.meta:
        _set_scaling(trainer)
    crops = CropSampler(preset, data, vae.config.spatial_compression)

    def step_fn(step: int) -> tuple[Tensor, dict[str, float]]:
        x = to_model_input(crops(step)).to(device)
        recon, posterior = vae(x, generator=step_generator(preset.seed, step, device))
        loss, parts = vae_loss(recon, x, posterior, colour_weight=preset.colour_weight)
        logged = {k: float(v) for k, v in parts.items()}
        logged["psnr"] = psnr_from_mse(logged["mse"])
        return loss, logged

    trainer.fit(step_fn, steps=steps)
    if trainer.step >= preset.steps and "heldout_psnr_db" not in trainer.meta:
        finish_vae(trainer, eval_clips)
    return trainer


def finish_vae(trainer: Trainer, eval_clips: int) -> None:
    """Measure held-out PSNR and latent statistics with the EMA weights; set the scaling."""
    ema = trainer.ema.module
    assert isinstance(ema, VideoVAE)
    bucket = get_preset(trainer.preset.data).buckets[0]
    clips = heldout_clips(
        eval_clips, width=bucket.width, height=bucket.height, frames=bucket.frames
    )
    ema.eval()
    stats = evaluate_vae(ema, clips)
    trainer.meta.update(
        shift_factor=stats["latent_mean"],
        scaling_factor=1.0 / stats["latent_std"],
        heldout_psnr_db=round(stats["psnr"], 2),
        heldout_psnr_worst_clip_db=round(stats["psnr_min_clip"], 2),
        heldout_psnr_objects_db=round(stats["psnr_objects"], 2),
        heldout_clips=f"{eval_clips} x {bucket.name} (seed {HELDOUT_SEED})",
    )
    _set_scaling(trainer)
    trainer.checkpoint()


def _set_scaling(trainer: Trainer) -> None:
    ema = trainer.ema.module
    meta = trainer.meta
    ema.config = replace(
        ema.config, shift_factor=meta["shift_factor"], scaling_factor=meta["scaling_factor"]
    )
