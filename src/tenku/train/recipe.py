"""``tenku train world``: the whole default model in one command, within a wall-clock budget.

One run goes, in order:

0. **smoke**: two steps of the VAE, a latent cache of one clip per bucket, two steps of the
   transformer, an export and a one-frame generation from the exported folder, all with the
   recipe's real models and shapes, so a crash shows in the first minute, not the last;
1. **vae**: the causal video VAE on random crops of freshly drawn world clips (each step's
   clips are a pure function of ``(seed, step)``), then its held-out PSNR and latent scaling;
2. **cache**: fresh clips of every bucket rendered and encoded (latents + text states of
   ``cache_captions`` captions each) until the cache's share of time or ``cache_max`` is spent;
3. **dit**: the transformer on the cache (random context masks, text dropout), exported as a
   model folder at every checkpoint, so the newest usable model is always on disk;
4. **finish**: the export (fp16 safetensors, configs, ``pipeline.json``), ``loss.png`` with
   every phase, and ``summary.json`` (budget, seconds and steps per phase, figures).

The budget left after the smoke phase is split between phases by ``shares``; learning rates
decay over each phase's time. Clips are drawn by :func:`tenku.world.sample.sample_scene`, which
never draws a held-out combination (``holdout.json``), and rendered by the batched torch
renderer on CUDA or the numpy one on a CPU. Held-out combinations never reach training.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from tenku.io import atomic_path
from tenku.models.dit import DIT_PRESETS, DiT
from tenku.models.text import MiniLMEncoder, TextEncoder, default_text_encoder
from tenku.models.vae import VAE_PRESETS, VideoVAE, to_model_input, vae_loss
from tenku.train.dit import LatentBatches, dit_step_fn, encode_videos
from tenku.train.loop import Trainer, hardware, plot_history, step_generator, step_rng
from tenku.train.presets import WorldRecipe
from tenku.train.vae import evaluate_vae, heldout_clips, psnr_from_mse
from tenku.world.dataset import scene_chunks
from tenku.world.render import render
from tenku.world.spec import SceneSpec

PHASES = ("vae", "cache", "dit")
SMOKE_STEPS = 2


# ----------------------------------------------------------------------------- data


def scene_workers(device: torch.device) -> int:
    """Processes that draw scenes: all cores but one beside a GPU (sampling a scene costs
    2-5 ms of Python, more than a GPU step per clip); none on a CPU, which trains instead.
    ``$TENKU_SCENE_WORKERS`` overrides it (the device script's dry run uses it)."""
    if os.environ.get("TENKU_SCENE_WORKERS"):
        return int(os.environ["TENKU_SCENE_WORKERS"])
    return max((os.cpu_count() or 1) - 1, 0) if device.type == "cuda" else 0


def render_clips(specs: list[SceneSpec], device: torch.device) -> Tensor:
    """``(N, T, H, W, 3)`` uint8 on ``device``: the torch renderer on CUDA, numpy on a CPU
    (measured on 2 Zen 4 cores: numpy 469 clips/s at 17 x 128 x 128, torch 33)."""
    if device.type == "cuda":
        from tenku.world.render_torch import render_batch

        try:
            return render_batch(specs, device)
        except Exception as err:  # never lose a device run to the renderer: say it, fall back
            print(f"render_batch failed on {device} ({err}); rendering with numpy", flush=True)
    return torch.from_numpy(np.stack([render(s) for s in specs])).to(device)


class CropStream:
    """VAE batches: clips of scenes drawn from a pool of ``vae_pool`` scenes of the first
    bucket (sampled once, in worker processes beside a GPU), cut into random crops."""

    def __init__(self, recipe: WorldRecipe, spatial: int, device: torch.device):
        self.recipe, self.spatial, self.device = recipe, spatial, device
        p, b = recipe.vae, recipe.buckets[0]
        sizes = [min(256, recipe.vae_pool - i) for i in range(0, recipe.vae_pool, 256)]
        jobs = [(p.seed, 10, k, b, n, 0) for k, n in enumerate(sizes)]
        self.scenes = [s for specs, _ in scene_chunks(jobs, scene_workers(device)) for s in specs]

    def __call__(self, step: int) -> Tensor:
        """``(B, 3, crop_frames, crop, crop)`` float video in [-1, 1] on the device."""
        p, b = self.recipe.vae, self.recipe.buckets[0]
        n = self.recipe.vae_clips or p.batch_size
        rng = step_rng(p.seed, step, 11)
        specs = [self.scenes[int(i)] for i in rng.choice(len(self.scenes), n, replace=False)]
        clips = render_clips(specs, self.device)  # (N, T, H, W, 3)
        frames = min(p.crop_frames, 1 + (b.frames - 1) // 4 * 4)
        crop, s = min(p.crop_size, b.height, b.width), self.spatial
        out = []
        for i in range(p.batch_size):
            t0 = int(rng.integers(b.frames - frames + 1))
            y = int(rng.integers((b.height - crop) // s + 1)) * s
            x = int(rng.integers((b.width - crop) // s + 1)) * s
            out.append(clips[i % n, t0 : t0 + frames, y : y + crop, x : x + crop])
        return to_model_input(torch.stack(out)).to(self.device)


def build_pool(
    recipe: WorldRecipe,
    vae: VideoVAE,
    encoder: TextEncoder,
    device: torch.device,
    *,
    budget_s: float | None = None,
    clips: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Cache entries of fresh clips, buckets in turn by weight, until ``budget_s`` seconds or
    ``clips`` (default ``cache_max``) clips are spent; at least one chunk per bucket."""
    limit = clips or recipe.cache_max
    preset = replace(recipe.dit, cache_captions=recipe.cache_captions)
    seed, first = recipe.dit.seed, len(recipe.buckets)  # each bucket once, then by weight
    weights = np.asarray([b.weight for b in recipe.buckets])
    picks = step_rng(seed, 0, 12).choice(first, 2 * limit // recipe.cache_chunk + first,
                                         p=weights / weights.sum())  # fmt: skip
    jobs = [
        (seed, 13, k, recipe.buckets[k if k < first else int(picks[k])],
         min(recipe.cache_chunk, max(limit // first, 1)) if k < first else recipe.cache_chunk, 4)
        for k in range(len(picks))
    ]  # fmt: skip
    entries: list[dict[str, Any]] = []
    count, started = 0, time.perf_counter()
    vae.eval()
    chunks = scene_chunks(jobs, scene_workers(device))
    for k, (specs, caps) in enumerate(chunks):
        if count >= limit or (
            k >= first and budget_s is not None and time.perf_counter() - started >= budget_s
        ):
            chunks.close()
            break
        specs, caps = specs[: limit - count], caps[: limit - count]
        videos = render_clips(specs, device)
        entry = encode_videos(
            preset, videos, np.asarray(caps), vae, encoder, device, f"pool-{k}",
            chunk=recipe.cache_chunk, store=device,
        )  # fmt: skip
        entry["bucket"] = jobs[k][3].name
        entries.append(entry)
        count += len(specs)
        if progress:
            progress(len(specs))
    return entries


# ----------------------------------------------------------------------------- the run


class Run:
    """One ``tenku train world`` run: its folder, its clock, its log and its summary."""

    def __init__(
        self,
        recipe: WorldRecipe,
        out: Path,
        budget_s: float,
        device: torch.device,
        on_phase: Callable[[], None] | None = None,
    ):
        self.recipe, self.out, self.budget_s, self.device = recipe, out, budget_s, device
        self.on_phase = on_phase
        self.started = time.perf_counter()
        self.summary: dict[str, Any] = {
            "recipe": recipe.name,
            "budget_s": budget_s,
            "hardware": hardware(device),
            "torch": torch.__version__,
            "phases": {},
        }
        out.mkdir(parents=True, exist_ok=True)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    @property
    def left(self) -> float:
        return self.budget_s - self.elapsed

    def log(self, message: str) -> None:
        line = f"[{self.elapsed:7.1f}s] {message}"
        print(line, flush=True)
        with (self.out / "train.log").open("a") as f:
            f.write(line + "\n")

    def phase(self, name: str, **figures: Any) -> None:
        self.summary["phases"][name] = figures
        self.log(f"{name}: " + json.dumps(figures))
        with atomic_path(self.out / "summary.json") as tmp:
            tmp.write_text(json.dumps(self.summary, indent=1, default=str))
        if self.on_phase is not None:
            self.on_phase()


def train_world(
    recipe: WorldRecipe,
    out: str | Path,
    *,
    budget_s: float,
    device: torch.device,
    precision: torch.dtype | None = None,
    init: str | Path | None = None,
    text_encoder: TextEncoder | str | Path | None = None,
    export: str | Path | None = None,
    smoke: bool = True,
    progress: bool = True,
    on_phase: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Run the whole recipe within ``budget_s`` seconds; returns the summary.

    ``init`` is a model folder whose VAE and transformer weights start the run (they must
    match the recipe's models); ``text_encoder`` an encoder or an all-MiniLM-L6-v2 folder
    (default: the installed one); ``export`` the model folder written at every checkpoint of
    the transformer and at the end (default ``OUT/model``); ``on_phase`` is called after
    each phase (the device run copies the log and plots out).
    """
    out = Path(out)
    run = Run(recipe, out, budget_s, device, on_phase)
    export = Path(export) if export is not None else out / "model"
    if isinstance(text_encoder, str | Path):
        from tenku.models.text import CachedEncoder

        text_encoder = CachedEncoder(MiniLMEncoder(text_encoder, device=device))
    encoder = default_text_encoder(device=device) if text_encoder is None else text_encoder
    run.log(f"tenku train world --recipe {recipe.name}: {budget_s:.0f} s on {hardware(device)}")
    if smoke:
        started = run.elapsed
        _phases(recipe, out / "smoke", device, precision, encoder, init, out / "smoke" / "model",
                run=None, smoke=True, progress=False)  # fmt: skip
        run.phase("smoke", seconds=round(run.elapsed - started, 1))
    budget = max(run.left - recipe.finish_s, 0.0)
    shares = np.asarray(recipe.shares) / sum(recipe.shares)
    seconds = dict(zip(PHASES, (budget * shares).tolist(), strict=True))
    _phases(recipe, out, device, precision, encoder, init, export, run=run, seconds=seconds,
            progress=progress)  # fmt: skip
    run.summary["seconds"] = round(run.elapsed, 1)
    run.phase("done", seconds=round(run.elapsed, 1), export=str(export))
    return run.summary


def _phases(
    recipe: WorldRecipe,
    out: Path,
    device: torch.device,
    precision: torch.dtype | None,
    encoder: TextEncoder,
    init: str | Path | None,
    export: Path,
    *,
    run: Run | None,
    seconds: dict[str, float] | None = None,
    smoke: bool = False,
    progress: bool = True,
) -> None:
    """VAE -> cache -> transformer -> export: ``seconds`` per phase, or two steps (smoke)."""
    from tenku.pipelines.pipeline import TenkuPipeline, export_model

    def note(name: str, **figures: Any) -> None:
        if run is not None:
            run.phase(name, **figures)

    budget = seconds or {}
    torch.manual_seed(recipe.vae.seed)
    # 1. the VAE (kept as it is when its share is 0 and --init gives one)
    vae = VideoVAE(VAE_PRESETS[recipe.vae.model])
    if init is not None:
        vae = _load_init(vae, Path(init) / "vae")
    if recipe.shares[0] == 0 and init is not None:
        clips = 2 if smoke else recipe.eval_clips
        vae_trained, vae_history, vae_figures = _keep_vae(vae, Path(init) / "vae", out, recipe,
                                                          device, clips)  # fmt: skip
        note("vae", kept=str(Path(init) / "vae"), **vae_figures)
    else:
        vae_trained, vae_history, vae_figures = _train_vae(
            vae, recipe, out, device, precision, budget.get("vae", 0.0), smoke, progress, note
        )
    # 2. the latent cache
    started = time.perf_counter()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        smoke_clips = len(recipe.buckets) if smoke else None  # one clip per bucket
        entries = build_pool(
            recipe, vae_trained, encoder, device, budget_s=budget.get("cache"), clips=smoke_clips
        )
    for e in entries:  # autocast encodes in bf16; the cache holds fp16 either way
        for key in ("latents", "tokens", "pooled"):
            e[key] = e[key].half()
    batches = LatentBatches(entries, recipe.dit)
    note("cache", clips=len(batches), buckets=batches.buckets,
         seconds=round(time.perf_counter() - started, 1))  # fmt: skip
    # 3. the transformer, exported at every checkpoint
    torch.manual_seed(recipe.dit.seed)
    channels = vae_trained.config.latent_channels
    dit = DiT(replace(DIT_PRESETS[recipe.dit.model], latent_channels=channels))
    if init is not None:
        dit = _load_init(dit, Path(init) / "transformer")
    defaults = {"guidance": recipe.guidance, "steps": recipe.steps}

    def save_and_export(model: nn.Module, directory: Path, meta: dict[str, Any]) -> None:
        assert isinstance(model, DiT)
        model.save_pretrained(directory, meta=meta)
        export_model(out / "vae" / "model", directory, export, name=f"tenku-{recipe.name}",
                     defaults=defaults)  # fmt: skip

    trainer = Trainer(dit, recipe.dit, out / "dit", device=device, precision=precision,
                      save=save_and_export, progress=progress)  # fmt: skip
    trainer.meta.update(
        command=f"tenku train world --recipe {recipe.name}",
        vae_psnr_db=vae_figures.get("heldout_psnr_db"),
        cached_clips=len(batches),
    )
    step_fn = dit_step_fn(trainer.model, batches, recipe.dit, device)
    if smoke:
        trainer.fit(step_fn, steps=SMOKE_STEPS)
        trainer.checkpoint()
    else:
        trainer.fit(step_fn, budget_s=budget["dit"], checkpoint_s=recipe.checkpoint_s)
    note("dit", steps=trainer.step, seconds=round(trainer.seconds, 1),
         precision=str(trainer.precision).removeprefix("torch."),
         samples=trainer.step * recipe.dit.batch_size, parameters=dit.num_params(),
         loss_last_100=float(np.mean([h["loss"] for h in trainer.history[-100:]])))  # fmt: skip
    # 4. the exported folder generates; the loss curves of both phases in one plot
    pipe = TenkuPipeline.from_pretrained(export, device=device, text_encoder=encoder)
    from tenku.pipelines.request import GenerationRequest

    side = max(64, recipe.buckets[0].height)  # requests start at 64 px
    request = GenerationRequest("a red ball", seconds=0, width=side, height=side, seed=0, steps=2)
    (video,) = pipe.generate(request)
    note("export", folder=str(export), frames=list(video.frames.shape))
    history = [{"step": h["step"], "vae loss": h["loss"], "vae psnr (dB)": h["psnr"]}
               for h in vae_history]  # fmt: skip
    history += [{"step": h["step"], "transformer loss": h["loss"]} for h in trainer.history]
    plot_history(history, out / "loss.png", f"tenku train world --recipe {recipe.name}")


def _train_vae(
    vae: VideoVAE,
    recipe: WorldRecipe,
    out: Path,
    device: torch.device,
    precision: torch.dtype | None,
    seconds: float,
    smoke: bool,
    progress: bool,
    note: Callable[..., None],
) -> tuple[VideoVAE, list[dict[str, float]], dict[str, Any]]:
    """Train ``vae`` for ``seconds`` (or two steps); the EMA model, its history and figures."""
    trainer = Trainer(vae, recipe.vae, out / "vae", device=device, precision=precision,
                      save=lambda m, d, meta: m.save_pretrained(d, meta=meta),
                      progress=progress)  # fmt: skip
    trainer.meta["command"] = f"tenku train world --recipe {recipe.name}"
    crops = CropStream(recipe, vae.config.spatial_compression, device)

    def vae_step(step: int) -> tuple[Tensor, dict[str, float]]:
        x = crops(step)
        recon, posterior = trainer.model(x, generator=step_generator(recipe.vae.seed, step, device))
        loss, parts = vae_loss(recon, x, posterior, colour_weight=recipe.vae.colour_weight)
        logged = {k: float(v) for k, v in parts.items()}
        logged["psnr"] = psnr_from_mse(logged["mse"])
        return loss, logged

    if smoke:
        trainer.fit(vae_step, steps=SMOKE_STEPS)
    else:
        trainer.fit(vae_step, budget_s=seconds, checkpoint_s=recipe.checkpoint_s)
    figures = _finish_vae(trainer, recipe, 2 if smoke else recipe.eval_clips)
    note("vae", steps=trainer.step, seconds=round(trainer.seconds, 1),
         precision=str(trainer.precision).removeprefix("torch."),
         samples=trainer.step * recipe.vae.batch_size, **figures)  # fmt: skip
    ema = trainer.ema.module
    assert isinstance(ema, VideoVAE)
    return ema, trainer.history, figures


def _keep_vae(
    vae: VideoVAE, source: Path, out: Path, recipe: WorldRecipe, device: torch.device, clips: int
) -> tuple[VideoVAE, list[dict[str, float]], dict[str, Any]]:
    """The VAE of ``--init`` as it is (same weights, same scaling), copied to OUT/vae/model,
    with its held-out PSNR; no history."""
    import shutil

    dest = out / "vae" / "model"
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copyfile(source / name, dest / name)
    vae = vae.to(device).eval()
    b = recipe.buckets[0]
    held = heldout_clips(clips, width=b.width, height=b.height, frames=b.frames)
    psnr = evaluate_vae(vae, held)["psnr"]
    return vae, [], {"heldout_psnr_db": round(psnr, 2), "heldout_clips": f"{clips} x {b.name}"}


def _finish_vae(trainer: Trainer, recipe: WorldRecipe, clips: int) -> dict[str, float]:
    """Held-out PSNR and latent statistics with the EMA weights; sets the latent scaling."""
    ema = trainer.ema.module
    assert isinstance(ema, VideoVAE)
    b = recipe.buckets[0]
    held = heldout_clips(clips, width=b.width, height=b.height, frames=b.frames)
    ema.eval()
    stats = evaluate_vae(ema, held)
    figures = {
        "heldout_psnr_db": round(stats["psnr"], 2),
        "heldout_psnr_objects_db": round(stats["psnr_objects"], 2),
        "heldout_clips": f"{clips} x {b.name}",
    }
    trainer.meta.update(figures, shift_factor=stats["latent_mean"],
                        scaling_factor=1.0 / max(stats["latent_std"], 1e-6))  # fmt: skip
    ema.config = replace(ema.config, shift_factor=trainer.meta["shift_factor"],
                         scaling_factor=trainer.meta["scaling_factor"])  # fmt: skip
    trainer.checkpoint()
    return figures


def _load_init(model: nn.Module, directory: Path) -> Any:
    """``model`` with the weights of ``directory``, whose config must be the same."""
    from tenku.models import checkpoint

    found = checkpoint.load_config(directory, type(model.config))
    mine, theirs = asdict(model.config), asdict(found)
    scaling = ("shift_factor", "scaling_factor")  # measured again after training
    differ = sorted(k for k in mine if k not in scaling and mine[k] != theirs[k])
    if differ:
        raise ValueError(
            f"init: {directory} holds another {type(model).__name__} (its {', '.join(differ)} "
            "differ); choose the recipe it was trained with"
        )
    model.config = found
    return checkpoint.load_weights(model, directory)
