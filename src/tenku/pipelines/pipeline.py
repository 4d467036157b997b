"""Text to video with the native model: prompt -> text states -> denoised latent -> frames.

A model folder holds ``pipeline.json`` (name, text encoder, sampling defaults) and the
``vae/`` and ``transformer/`` subfolders, each ``config.json`` + fp16 ``model.safetensors``.
The default folder ships inside the package (``tenku/weights/default``); ``TENKU_MODEL``
points elsewhere.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from tenku.diffusion import SAMPLERS, CFGDenoiser, flow_sigmas, resolution_shift
from tenku.io import atomic_path
from tenku.models.dit import DiT
from tenku.models.text import TextEmbedding, TextEncoder, default_text_encoder
from tenku.models.vae import VideoVAE, to_uint8
from tenku.pipelines.request import GenerationRequest

FORMAT = "tenku-pipeline/1"
DEFAULTS = {"steps": 16, "guidance": 4.0, "sampler": "euler"}


def default_model_path() -> Path:
    """``$TENKU_MODEL`` if set, else the weights shipped in the package."""
    env = os.environ.get("TENKU_MODEL")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "weights" / "default"


def export_model(
    vae: str | Path,
    transformer: str | Path,
    out: str | Path,
    *,
    name: str,
    defaults: dict[str, Any] | None = None,
) -> Path:
    """Assemble a model folder from a trained VAE and transformer folder (copies the files)."""
    out = Path(out)
    for sub, src in (("vae", Path(vae)), ("transformer", Path(transformer))):
        for f in ("config.json", "model.safetensors"):
            if not (src / f).is_file():
                raise FileNotFoundError(f"{sub}: {src / f} is missing")
        (out / sub).mkdir(parents=True, exist_ok=True)
        for f in ("config.json", "model.safetensors"):
            with atomic_path(out / sub / f) as tmp:
                shutil.copyfile(src / f, tmp)
    spec = {
        "format": FORMAT,
        "name": name,
        "text_encoder": "all-MiniLM-L6-v2",
        "defaults": {**DEFAULTS, **(defaults or {})},
    }
    with atomic_path(out / "pipeline.json") as tmp:
        tmp.write_text(json.dumps(spec, indent=1) + "\n")
    return out


@dataclass
class GeneratedVideo:
    """One finished video and everything needed to make it again."""

    frames: np.ndarray  # (T, H, W, 3) uint8
    fps: float
    request: GenerationRequest  # resolved: seed, steps, guidance and sampler filled in
    model: str
    timings: dict[str, float] = field(default_factory=dict)

    def sidecar(self) -> dict[str, Any]:
        """The JSON written beside the video: the full request, seed included."""
        t, h, w, _ = self.frames.shape
        return {
            "request": self.request.to_dict(),
            "model": self.model,
            "frames": t,
            "width": w,
            "height": h,
            "fps": self.fps,
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
        }


StepCallback = Callable[[int, int], None]  # (step done, steps in all)


class TenkuPipeline:
    """The native text-to-video pipeline: frozen text encoder, transformer and VAE."""

    def __init__(
        self,
        transformer: DiT,
        vae: VideoVAE,
        text_encoder: TextEncoder,
        *,
        name: str = "tenku",
        defaults: dict[str, Any] | None = None,
    ) -> None:
        self.transformer = transformer.eval().requires_grad_(False)
        self.vae = vae.eval().requires_grad_(False)
        self.text_encoder = text_encoder
        self.name = name
        self.defaults = {**DEFAULTS, **(defaults or {})}
        if transformer.config.latent_channels != vae.config.latent_channels:
            raise ValueError(
                f"model: transformer expects {transformer.config.latent_channels} latent "
                f"channels, the VAE gives {vae.config.latent_channels}"
            )

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path | None = None,
        *,
        device: torch.device | str = "cpu",
        text_encoder: TextEncoder | None = None,
    ) -> TenkuPipeline:
        """Load a model folder (default: :func:`default_model_path`)."""
        path = Path(path) if path is not None else default_model_path()
        spec_path = path / "pipeline.json"
        if not spec_path.is_file():
            raise FileNotFoundError(
                f"model: {path} has no pipeline.json; pass a folder written by `tenku export`"
            )
        spec = json.loads(spec_path.read_text())
        if spec.get("format") != FORMAT:
            raise ValueError(f"model: {spec_path} is not a {FORMAT} file")
        device = torch.device(device)
        transformer = DiT.from_pretrained(path / "transformer").to(device)
        vae = VideoVAE.from_pretrained(path / "vae", device=device)
        encoder = text_encoder or default_text_encoder(device=device)
        return cls(transformer, vae, encoder, name=spec["name"], defaults=spec.get("defaults"))

    # ------------------------------------------------------------------ stages

    def encode_prompt(self, prompts: list[str]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Conditional and unconditional transformer inputs (text, text_mask, pooled).

        The unconditional input has every token masked out and a zero pooled vector: the
        same "no text" the transformer saw in training when the caption was dropped.
        """
        emb: TextEmbedding = self.text_encoder.encode(prompts).to(self.device)
        cond = {"text": emb.tokens, "text_mask": emb.mask, "pooled": emb.pooled}
        uncond = {
            "text": torch.zeros_like(emb.tokens),
            "text_mask": torch.zeros_like(emb.mask),
            "pooled": torch.zeros_like(emb.pooled),
        }
        return cond, uncond

    def latent_shape(self, request: GenerationRequest) -> tuple[int, int, int, int]:
        cfg = self.vae.config
        return VideoVAE.latent_shape(
            request.frames,
            request.height,
            request.width,
            cfg.latent_channels,
            temporal=cfg.temporal_compression,
            spatial=cfg.spatial_compression,
        )

    def initial_noise(self, request: GenerationRequest, seeds: list[int]) -> Tensor:
        """One latent of noise per seed, drawn on the CPU (the same on every device)."""
        shape = self.latent_shape(request)
        noise = [torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in seeds]
        return torch.stack(noise).to(self.device)

    @torch.no_grad()
    def denoise(
        self,
        noise: Tensor,
        cond: dict[str, Tensor],
        uncond: dict[str, Tensor],
        *,
        steps: int,
        guidance: float,
        sampler: str,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
        callback: StepCallback | None = None,
    ) -> Tensor:
        """Integrate from noise to a clean latent ``(B, C, T, H, W)``.

        ``context``/``context_mask`` give clean latent frames to keep (image-to-video,
        extension and the other conditioned tasks); they are held fixed at every step.
        """
        pt, ph, pw = self.transformer.config.patch_size
        _, _, t, h, w = noise.shape
        sigmas = flow_sigmas(steps, shift=resolution_shift((t // pt) * (h // ph) * (w // pw)))
        denoiser = CFGDenoiser(self.transformer, cond, uncond, scale=guidance)
        extra: dict[str, Tensor] = {}
        if context is not None and context_mask is not None:
            extra = {"context": context, "context_mask": context_mask}

        def report(info: dict[str, Any]) -> None:
            if context is not None and context_mask is not None:
                info["x"].copy_(context_mask * context + (1 - context_mask) * info["x"])
            if callback is not None:
                callback(info["i"] + 1, steps)

        x = noise
        if context is not None and context_mask is not None:
            x = context_mask * context + (1 - context_mask) * noise
        return SAMPLERS[sampler](denoiser, x, sigmas, extra_args=extra, callback=report)

    @torch.no_grad()
    def decode(self, latents: Tensor) -> np.ndarray:
        """Diffusion latents ``(B, C, T', H', W')`` -> uint8 frames ``(B, T, H, W, 3)``."""
        return to_uint8(self.vae.decode(self.vae.unscale_latents(latents)))

    # ------------------------------------------------------------------ the whole job

    def generate(
        self,
        request: GenerationRequest,
        *,
        progress: bool = False,
        callback: StepCallback | None = None,
    ) -> list[GeneratedVideo]:
        """Generate ``request.variations`` videos (seeds ``seed``, ``seed + 1``, ...)."""
        seed = request.seed if request.seed is not None else secrets.randbelow(2**31)
        request = request.resolved(self.defaults, seed)
        assert request.steps is not None and request.guidance is not None and request.sampler
        timings: dict[str, float] = {}
        start = time.perf_counter()
        cond, uncond = self.encode_prompt([request.prompt])
        timings["text"] = time.perf_counter() - start
        seeds = [seed + i for i in range(request.variations)]
        total = request.steps * len(seeds)
        bar = tqdm(total=total, desc="generate", unit="step", disable=not progress)
        frames, timings["denoise"], timings["decode"] = [], 0.0, 0.0
        for k, s in enumerate(seeds):  # one at a time: a seed gives the same video alone or not

            def on_step(done: int, steps: int, k: int = k) -> None:
                bar.update(k * steps + done - bar.n)
                if callback is not None:
                    callback(k * steps + done, total)

            start = time.perf_counter()
            latents = self.denoise(
                self.initial_noise(request, [s]),
                cond,
                uncond,
                steps=request.steps,
                guidance=request.guidance,
                sampler=request.sampler,
                callback=on_step,
            )
            timings["denoise"] += time.perf_counter() - start
            start = time.perf_counter()
            frames.append(self.decode(latents)[0])
            timings["decode"] += time.perf_counter() - start
        bar.close()
        return [
            GeneratedVideo(
                frames=frames[i],
                fps=request.fps,
                request=replace(request, seed=s, variations=1),
                model=self.name,
                timings=timings,
            )
            for i, s in enumerate(seeds)
        ]
