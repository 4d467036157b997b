"""Named training recipes: every shipped checkpoint comes from one of these.

``WorldRecipe`` (``tenku train world --recipe NAME --budget 8m``) trains both models in one
budgeted run (:mod:`tenku.train.recipe`); ``TrainPreset`` is one model's recipe.

``tenku train vae --preset world`` and ``tenku train dit --preset world`` rebuild the shipped
default model; the ``tiny`` presets exist for tests (seconds on a CPU).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

from tenku.world.dataset import PRESETS as DATASET_PRESETS
from tenku.world.dataset import Bucket

Kind = Literal["vae", "dit"]


@dataclass(frozen=True)
class TrainPreset:
    """One recipe: the model preset, the data, the schedule and the optimiser."""

    name: str
    kind: Kind
    description: str
    model: str  # name in VAE_PRESETS (vae) or DIT_PRESETS (dit)
    data: str  # name in tenku.world.dataset.PRESETS
    steps: int  # optimiser steps in all
    batch_size: int
    lr: float  # peak learning rate (AdamW)
    warmup: int = 100  # linear warm-up steps, then cosine decay to min_lr_ratio * lr
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0  # max global gradient norm
    ema_decay: float = 0.999  # the shipped weights are the exponential moving average
    checkpoint_every: int = 200  # steps between checkpoints (state + EMA weights + plot)
    seed: int = 0
    # VAE: random crops of the rendered clips, since the VAE is fully convolutional
    crop_frames: int = 9  # 4k + 1 frames, so the causal first frame is always inside
    crop_size: int = 64  # pixels, a multiple of the spatial compression
    colour_weight: float = 0.0  # extra loss weight on saturated (object) pixels, see vae_loss
    # DiT: latents and text states are computed once into a cache, then sampled each step
    cache_videos: int = 0  # videos of the dataset encoded into the cache (0 = all)
    cache_captions: int = 2  # captions per video encoded (drawn from the stored four)
    text_dropout: float = 0.1  # share of samples trained without text (for guidance)
    context_prob: float = 0.5  # share of samples given some clean latent frames as context

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if (self.crop_frames - 1) % 4:
            raise ValueError(f"crop_frames: must be 4k + 1, got {self.crop_frames}")
        for name in ("text_dropout", "context_prob", "ema_decay", "min_lr_ratio"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}: must lie in [0, 1], got {getattr(self, name)}")


_VAE_TINY = TrainPreset(
    name="tiny",
    kind="vae",
    description="the tiny VAE on the tiny dataset for a few steps: for tests",
    model="tiny",
    data="tiny",
    steps=4,
    batch_size=2,
    lr=1e-3,
    warmup=1,
    checkpoint_every=2,
    crop_frames=5,
    crop_size=16,
    ema_decay=0.9,
)

VAE_TRAIN_PRESETS: dict[str, TrainPreset] = {
    "tiny": _VAE_TINY,
    "world": TrainPreset(
        name="world",
        kind="vae",
        description=(
            "the shipped default VAE (commit 2cb0904): the `world` VAE on world-128, 64 px "
            "crops of 9 frames; since then the KL is a mean per latent element and a shard "
            "serves 4 passes, so a rerun today gives another model"
        ),
        model="world",
        data="world-128",
        steps=1000,
        batch_size=8,
        lr=5e-4,  # measured at 300 steps of 32 px crops: 1.5e-3 stalls at 14.6 dB, 5e-4 20.6
        warmup=100,
        checkpoint_every=200,
    ),
    "world-c16": TrainPreset(
        name="world-c16",
        kind="vae",
        description=(
            "experimental, not shipped: the `world-c16` VAE (16 latent channels) on world-128, "
            "48 px crops, saturated (object) pixels weighed 9x"
        ),
        model="world-c16",
        data="world-128",
        steps=3000,
        batch_size=8,
        lr=1e-3,  # overfitting 8 crops for 150 steps: 1e-3 reached 19.2 dB, 2e-3 15.5 dB
        warmup=100,
        checkpoint_every=500,
        crop_size=48,
        colour_weight=8.0,  # objects (about 5% of pixels) get about a third of the weight
    ),
}

DIT_TRAIN_PRESETS: dict[str, TrainPreset] = {
    "tiny": replace(
        _VAE_TINY,
        kind="dit",
        description="the tiny transformer on the tiny dataset for a few steps: for tests",
        cache_videos=16,
        cache_captions=2,
    ),
    "world": TrainPreset(
        name="world",
        kind="dit",
        description=(
            "the shipped default transformer (commit 2cb0904): world-xs on latents of world-128"
        ),
        model="world-xs",
        data="world-128",
        steps=2200,
        batch_size=8,
        lr=3e-4,
        warmup=200,
        weight_decay=0.0,
        ema_decay=0.998,
        checkpoint_every=250,
        cache_videos=2048,
        context_prob=0.3,
        cache_captions=2,
    ),
}

DIT_TRAIN_PRESETS["world-c16"] = replace(
    DIT_TRAIN_PRESETS["world"],
    name="world-c16",
    description="experimental, not shipped: world-xs on latents of the world-c16 VAE",
    steps=1000,
    lr=5e-4,
    warmup=150,
    cache_videos=1536,
)

TRAIN_PRESETS: dict[str, dict[str, TrainPreset]] = {
    "vae": VAE_TRAIN_PRESETS,
    "dit": DIT_TRAIN_PRESETS,
}


def get_train_preset(kind: str, name: str) -> TrainPreset:
    """The preset ``name`` for ``kind`` (``vae`` or ``dit``); a clear error otherwise."""
    if kind not in TRAIN_PRESETS:
        raise ValueError(f"kind: {kind!r} is not one of {sorted(TRAIN_PRESETS)}")
    presets = TRAIN_PRESETS[kind]
    if name not in presets:
        raise ValueError(f"preset: {name!r} is not one of {sorted(presets)} for {kind}")
    return presets[name]


# ----------------------------------------------------------------------------- world recipes


@dataclass(frozen=True)
class WorldRecipe:
    """The whole default model: both models' recipes, the clip shapes and the time split."""

    name: str
    description: str
    vae: TrainPreset  # the VAE phase (its `steps` is only the cosine length of a step-run)
    dit: TrainPreset  # the transformer phase (likewise)
    buckets: tuple[Bucket, ...]  # clip shapes of the latent cache (the VAE crops clips[0])
    shares: tuple[float, float, float] = (0.35, 0.1, 0.55)  # of the budget: vae, cache, dit
    finish_s: float = 20.0  # seconds kept back for the export, plots and held-out PSNR
    vae_clips: int = 0  # clips rendered per VAE step (0 = batch_size); crops are cut from them
    vae_pool: int = 2048  # scenes the VAE's clips are drawn from (sampled once)
    cache_chunk: int = 8  # clips rendered and encoded per call while building the cache
    cache_max: int = 4096  # clips at most in the cache
    cache_captions: int = 2  # captions per cached clip
    eval_clips: int = 32  # held-out clips for the VAE's PSNR and latent scaling
    checkpoint_s: float = 120.0  # a checkpoint (and an export) at least this often
    guidance: float = 4.0  # pipeline.json defaults of the exported model
    steps: int = 16

    def __post_init__(self) -> None:
        if len(self.shares) != 3 or min(self.shares) < 0 or sum(self.shares) <= 0:
            raise ValueError(f"shares: need three non-negative shares, got {self.shares}")
        if not self.buckets:
            raise ValueError("buckets: need at least one clip shape")


def _vae(name: str, **kw: Any) -> TrainPreset:
    base = {"warmup": 50, "checkpoint_every": 10**9, "steps": 10**6, "data": "world-128"}
    return TrainPreset(name=name, kind="vae", description=name, **{**base, **kw})


def _dit(name: str, **kw: Any) -> TrainPreset:
    base = {"warmup": 100, "checkpoint_every": 10**9, "steps": 10**6, "data": "world-128"}
    return TrainPreset(name=name, kind="dit", description=name, **{**base, **kw})


_WORLD_BUCKETS = DATASET_PRESETS["world-128"].buckets  # the shipped model's shapes

RECIPES: dict[str, WorldRecipe] = {
    r.name: r
    for r in (
        WorldRecipe(
            name="tiny",
            description="tiny models on 32 px clips: tests and dry runs (seconds on a CPU)",
            vae=_vae("tiny", model="tiny", batch_size=2, lr=1e-3, warmup=1, crop_frames=5,
                     crop_size=16, ema_decay=0.9),
            dit=_dit("tiny", model="tiny", batch_size=2, lr=1e-3, warmup=1, ema_decay=0.9),
            buckets=(Bucket(32, 32, 9), Bucket(48, 32, 9)),
            finish_s=5.0,
            cache_chunk=2,
            cache_max=8,
            vae_pool=16,
            eval_clips=2,
            checkpoint_s=1.0,
        ),
        WorldRecipe(
            name="world",
            description=(
                "the shipped architecture (world VAE, world-xs transformer) for a CPU budget; "
                "--init continues the shipped weights"
            ),
            vae=_vae("world", model="world", batch_size=8, lr=5e-4, colour_weight=4.0),
            dit=_dit("world", model="world-xs", batch_size=8, lr=3e-4, warmup=200,
                     ema_decay=0.998, context_prob=0.3),
            buckets=_WORLD_BUCKETS,
            cache_max=3072,
        ),
        WorldRecipe(
            name="world-m",
            description=(
                "for an H200 budget of minutes: a 7.3 M-parameter VAE with 16 latent "
                "channels and the 12 M world-s transformer (decodes a 4 s clip in 1.2 s on "
                "2 Zen 4 cores)"
            ),
            vae=_vae("world-m", model="world-m", batch_size=32, lr=1e-3, crop_frames=9,
                     crop_size=128, colour_weight=4.0, ema_decay=0.995),
            dit=_dit("world-m", model="world-s", batch_size=128, lr=5e-4, warmup=300,
                     ema_decay=0.999, context_prob=0.3),
            buckets=_WORLD_BUCKETS,
            shares=(0.4, 0.1, 0.5),  # the VAE bounds everything: it gets the most
            vae_clips=32,
            vae_pool=16384,
            cache_chunk=64,
            cache_max=60_000,
            eval_clips=64,
            checkpoint_s=60.0,
        ),
    )
}  # fmt: skip


def get_recipe(name: str) -> WorldRecipe:
    if name not in RECIPES:
        raise ValueError(f"recipe: {name!r} is not one of {sorted(RECIPES)}")
    return RECIPES[name]


def parse_shares(text: str) -> tuple[float, float, float]:
    """``"0.4,0.1,0.5"`` -> the (vae, cache, dit) shares of a run's budget."""
    try:
        shares = tuple(float(v) for v in text.split(","))
    except ValueError:
        shares = ()
    if len(shares) != 3 or min(shares) < 0 or not 0 < sum(shares) < math.inf:
        raise ValueError(f"shares: {text!r} must be three non-negative numbers like 0.4,0.1,0.5")
    return shares  # type: ignore[return-value]


def parse_budget(text: str) -> float:
    """``"90s"``, ``"8m"``, ``"2.5h"`` or plain seconds -> seconds (> 0)."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    raw = text.strip().lower()
    scale = units.get(raw[-1:])
    try:
        value = float(raw[:-1] if scale else raw) * (scale or 1.0)
    except ValueError:
        raise ValueError(f"budget: {text!r} is not a duration like 90s, 8m or 2.5h") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"budget: {text!r} must be a positive duration")
    return value
