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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from tenku.diffusion import (
    SAMPLERS,
    CFGDenoiser,
    MixedDenoiser,
    flow_sigmas,
    resolution_shift,
    sdedit_start,
)
from tenku.io import atomic_path
from tenku.models.dit import DiT
from tenku.models.text import TextEmbedding, TextEncoder, default_text_encoder
from tenku.models.vae import VideoVAE, to_model_input, to_uint8
from tenku.pipelines.conditioning import (
    Given,
    Plan,
    Timeline,
    latent_groups,
    latent_mask,
    make_plan,
    paste,
    prompt_at,
    weight_curve,
)
from tenku.pipelines.request import GenerationRequest

FORMAT = "tenku-pipeline/1"
DEFAULTS = {
    "steps": 16,
    "guidance": 4.0,
    "sampler": "euler",
    "window_frames": 33,  # longer videos are made in windows of this many frames (4 s at 8 fps)
    "overlap_frames": 5,  # each window starts on the last window's last 5 frames (2 latents)
}


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
        # an empty CachedEncoder is falsy (len 0): test for None, not truth
        encoder = default_text_encoder(device=device) if text_encoder is None else text_encoder
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

    def latent_shape(
        self, request: GenerationRequest, frames: int | None = None
    ) -> tuple[int, int, int, int]:
        """``(C, T', H', W')`` of the request's latent, or of a window of ``frames`` frames."""
        cfg = self.vae.config
        return VideoVAE.latent_shape(
            request.frames if frames is None else frames,
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

    def sigmas(self, shape: tuple[int, ...] | torch.Size, steps: int) -> Tensor:
        """The sampling grid for latents of ``shape`` ``(B, C, T, H, W)``: ``(steps + 1,)``."""
        pt, ph, pw = self.transformer.config.patch_size
        _, _, t, h, w = shape
        return flow_sigmas(steps, shift=resolution_shift((t // pt) * (h // ph) * (w // pw)))

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
        init: Tensor | None = None,
        strength: float = 1.0,
        mix: tuple[tuple[dict[str, Tensor], dict[str, Tensor]], Tensor] | None = None,
        callback: StepCallback | None = None,
    ) -> Tensor:
        """Integrate from noise to a clean latent ``(B, C, T, H, W)``.

        ``context``/``context_mask`` give clean latent frames to keep (image-to-video,
        extension and the other conditioned tasks); they are held fixed at every step.
        ``init`` with ``strength < 1`` starts from that latent noised to ``strength`` (SDEdit:
        remix, blend). ``mix = ((cond_b, uncond_b), weight)`` mixes in a second prompt with a
        weight per latent frame ``(T,)`` (blend, storyboard cards).
        """
        sigmas = self.sigmas(noise.shape, steps)
        denoiser = CFGDenoiser(self.transformer, cond, uncond, scale=guidance)
        if mix is not None:
            (cond_b, uncond_b), weight = mix
            other = CFGDenoiser(self.transformer, cond_b, uncond_b, scale=guidance)
            weight = weight.to(noise.device).view(1, 1, -1, 1, 1)
            denoiser = MixedDenoiser(denoiser, other, weight)  # type: ignore[assignment]
        if init is not None and strength < 1.0:
            noise, sigmas = sdedit_start(init, noise, sigmas, strength)
            if len(sigmas) < 2:  # strength 0: the source itself
                return init
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

    @torch.no_grad()
    def encode_frames(self, frames: np.ndarray) -> Tensor:
        """uint8 frames ``(T, H, W, 3)``, ``T = 1 + 4k`` -> latent ``(1, C, T', H', W')``."""
        video = to_model_input(frames[None]).to(self.device)
        return self.vae.scale_latents(self.vae.encode(video).mode())

    # ------------------------------------------------------------------ the whole job

    def plan(self, request: GenerationRequest) -> Plan:
        """Read and fit every source the request names, and cut the timeline into windows."""
        window, overlap = self.defaults["window_frames"], self.defaults["overlap_frames"]
        return make_plan(request, window_frames=int(window), overlap_frames=int(overlap))

    def steps_for(self, request: GenerationRequest, plan: Plan) -> int:
        """Sampler steps one video of ``request`` takes (progress bars count these)."""
        assert request.steps is not None
        strength, total = _strength(request), 0
        for start, end in plan.windows:
            sigmas = self.sigmas((1, *self.latent_shape(request, end - start)), request.steps)
            total += request.steps if strength == 1.0 else int((sigmas < strength).sum())
        return total + (request.steps if plan.bridge else 0)

    def generate(
        self,
        request: GenerationRequest,
        *,
        progress: bool = False,
        callback: StepCallback | None = None,
    ) -> list[GeneratedVideo]:
        """Generate ``request.variations`` videos (seeds ``seed``, ``seed + 1``, ...).

        Any length: videos longer than one window (``defaults["window_frames"]``) are made
        window by window, each conditioned on the tail of the last, in constant memory.
        """
        seed = request.seed if request.seed is not None else secrets.randbelow(2**31)
        request = request.resolved(self.defaults, seed)
        plan = self.plan(request)
        seeds = [seed + i for i in range(request.variations)]
        per_video = self.steps_for(request, plan)
        total = per_video * len(seeds)
        bar = tqdm(total=total, desc="generate", unit="step", disable=not progress)
        timings: dict[str, float] = {}
        texts: dict[str, tuple[dict[str, Tensor], dict[str, Tensor]]] = {}  # one pass a prompt
        videos = []
        for k, s in enumerate(seeds):  # one at a time: a seed gives the same video alone or not

            def on_step(done: int, k: int = k) -> None:
                bar.update(k * per_video + done - bar.n)
                if callback is not None:
                    callback(k * per_video + done, total)

            chunks = self.stream(request, plan, s, callback=on_step, timings=timings, texts=texts)
            videos.append(
                GeneratedVideo(
                    frames=np.concatenate(list(chunks)),
                    fps=request.fps,
                    request=replace(request, seed=s, variations=1),
                    model=self.name,
                    timings=timings,
                )
            )
        bar.close()
        return videos

    def stream(
        self,
        request: GenerationRequest,
        plan: Plan,
        seed: int,
        *,
        callback: Callable[[int], None] | None = None,
        timings: dict[str, float] | None = None,
        texts: dict[str, tuple[dict[str, Tensor], dict[str, Tensor]]] | None = None,
    ) -> Iterator[np.ndarray]:
        """Yield the frames of one video ``(n, H, W, 3)`` uint8, window by window, in order.

        ``request`` must be resolved (:meth:`GenerationRequest.resolved`). Memory stays that of
        one window, whatever the length; a loop holds its frames back for the closing bridge.
        ``texts`` caches encoded prompts (pass one dict for several seeds of one request).
        """
        timings = {} if timings is None else timings
        for key in ("text", "denoise", "decode"):
            timings.setdefault(key, 0.0)
        overlap = int(self.defaults["overlap_frames"])
        done = 0

        def on_step(_: int, __: int) -> None:
            nonlocal done
            done += 1
            if callback is not None:
                callback(done)

        job = _Job(request, plan, seed, on_step, timings, {} if texts is None else texts)
        held: list[np.ndarray] = []
        tail: list[Given] = []
        for w, (start, end) in enumerate(plan.windows):
            first_new = start + overlap if w else 0
            frames = self._window(job, w, start, end, tail, first_new)
            tail = [Given(frames[-overlap:], end - overlap)]
            new = frames[first_new - start :]
            if plan.bridge:
                held.append(new)
            else:
                yield new
        if plan.bridge:
            yield self._close_loop(job, np.concatenate(held))

    def _close_loop(self, job: _Job, frames: np.ndarray) -> np.ndarray:
        """Regenerate the last ``plan.bridge`` frames so that the clip flows into its start.

        The bridge window holds the 5 frames before them and the clip's first 4 frames after
        them, and generates what lies between.
        """
        plan, bridge = job.plan, job.plan.bridge
        keep = plan.total - bridge
        length = 5 + bridge + 4
        given = [Given(frames[keep - 5 : keep], 0), Given(frames[:4], 5 + bridge)]
        request = replace(
            job.request,
            prompt=prompt_at(job.request, keep),
            remix=None,
            blend=None,
            cards=(),
            keyframes=(),
        )
        span = Plan(length, [(0, length)], Timeline(), [], 0)
        closing = replace(job, request=request, plan=span)
        bridged = self._window(closing, len(plan.windows), 0, length, given, 5)
        return np.concatenate([frames[:keep], bridged[5 : 5 + bridge]])

    def _text(self, job: _Job, prompt: str) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """The transformer's text inputs for ``prompt`` (encoded once, cached in ``job.texts``)."""
        if prompt not in job.texts:
            job.texts[prompt] = self.encode_prompt([prompt])
        return job.texts[prompt]

    def _window(
        self, job: _Job, index: int, start: int, end: int, tail: list[Given], first_new: int
    ) -> np.ndarray:
        """Generate output frames ``[start, end)``: ``(end - start, H, W, 3)`` uint8.

        ``tail`` holds frames given for this window only (the last window's tail); the
        prompt is the one in force at ``first_new``, the first frame this window adds.
        """
        request, plan, timings = job.request, job.plan, job.timings
        assert request.steps is not None and request.guidance is not None and request.sampler
        clock = time.perf_counter()
        timeline = Timeline([*plan.timeline.given, *tail])
        canvas, known = timeline.window(start, end)
        shape = self.latent_shape(request, end - start)
        context = mask = None
        if canvas is not None:
            context = self.encode_frames(canvas)
            given = torch.from_numpy(latent_mask(known)).to(self.device, context.dtype)
            mask = given.view(1, 1, -1, 1, 1).expand(1, 1, *shape[1:]).contiguous()
        prompt = prompt_at(request, first_new)
        cond, uncond = self._text(job, prompt)
        mix = None
        if request.blend is not None:
            positions = self._latent_positions(start, end, plan.total)
            weight = weight_curve(request.blend.curve, positions)
            mix = (self._text(job, request.blend.prompt), torch.from_numpy(weight))
        elif request.cards and (later := prompt_at(request, end - 1)) != prompt:
            # a card starts inside this window: its prompt takes over from its latent frame on
            switched = np.array([prompt_at(request, f) == later for f in range(start, end)])
            weight = torch.from_numpy(latent_mask(switched).astype(np.float32))
            mix = (self._text(job, later), weight)
        timings["text"] += time.perf_counter() - clock
        clock = time.perf_counter()
        generator = torch.Generator().manual_seed(_window_seed(job.seed, index))
        noise = torch.randn(shape, generator=generator)[None].to(self.device)
        init = None
        if plan.sources:
            clips = [self.encode_frames(video[start:end]) for video in plan.sources]
            init = clips[0]
            if len(clips) == 2 and mix is not None:
                init = torch.lerp(clips[0], clips[1], mix[1].to(init).view(1, 1, -1, 1, 1))
        latents = self.denoise(
            noise,
            cond,
            uncond,
            steps=request.steps,
            guidance=request.guidance,
            sampler=request.sampler,
            context=context,
            context_mask=mask,
            init=init,
            strength=_strength(request),
            mix=mix,
            callback=job.on_step,
        )
        timings["denoise"] += time.perf_counter() - clock
        clock = time.perf_counter()
        frames = paste(self.decode(latents)[0], canvas, known)
        timings["decode"] += time.perf_counter() - clock
        return frames

    def _latent_positions(self, start: int, end: int, total: int) -> np.ndarray:
        """Where each latent frame of window ``[start, end)`` sits in the video, in ``[0, 1]``."""
        centres = [start + (g.start + g.stop - 1) / 2 for g in latent_groups(end - start)]
        return np.array(centres) / max(total - 1, 1)


@dataclass
class _Job:
    """One video being made: its request and plan, seed, progress hook and text cache."""

    request: GenerationRequest
    plan: Plan
    seed: int
    on_step: StepCallback
    timings: dict[str, float]
    texts: dict[str, tuple[dict[str, Tensor], dict[str, Tensor]]]  # prompt -> (cond, uncond)


def _strength(request: GenerationRequest) -> float:
    """How far from its source a request starts: 1 is from pure noise."""
    if request.remix is not None:
        return request.remix.strength
    if request.blend is not None and request.blend.videos:
        return request.blend.strength
    return 1.0


def _window_seed(seed: int, index: int) -> int:
    """The noise seed of window ``index``: the request's seed for the first window."""
    return (seed + index * 0x9E3779B97F4A7C15) % 2**63
