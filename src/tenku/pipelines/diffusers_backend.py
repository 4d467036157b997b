"""Open-weight video models through diffusers: Wan 2.1/2.2, LTX-Video and CogVideoX.

A model is a local folder in the layout diffusers' ``save_pretrained`` writes
(``model_index.json`` + one subfolder per component); it is loaded with
``local_files_only=True``, so nothing is fetched. The family comes from ``model_index.json``'s
``_class_name`` and decides the pipelines used for each task:

========== =========================================== =========================================
family     folder class                                tasks
========== =========================================== =========================================
wan        WanPipeline                                 text-to-video, text-to-image,
                                                       video-to-video (WanVideoToVideoPipeline)
wan        WanImageToVideoPipeline                     image-to-video, first-last-frame
ltx        LTXPipeline (or its I2V/condition classes)  text-to-video, text-to-image,
                                                       image-to-video, first-last-frame,
                                                       keyframes (LTXConditionPipeline, images)
cogvideox  CogVideoXPipeline                           text-to-video, video-to-video
                                                       (CogVideoXVideoToVideoPipeline)
cogvideox  CogVideoXImageToVideoPipeline               image-to-video
========== =========================================== =========================================

``diffusers`` is imported here only, and this module only when a diffusers model is loaded, so
the native model's start-up does not pay for it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from tenku.io import read_image
from tenku.pipelines.backend import Backend, BackendOptions, Plan, sdpa_kernel
from tenku.pipelines.conditioning import fit_frames, fit_length, read_frames
from tenku.pipelines.pipeline import GeneratedVideo, StepCallback
from tenku.pipelines.request import GenerationRequest

T2V = frozenset({"text-to-video", "text-to-image"})
FIRST_LAST = frozenset({"image-to-video", "first-last-frame"})
EXTERNAL_ATTENTION = {"sage": "sage", "flash-attn": "flash"}  # tenku name -> diffusers backend


@dataclass(frozen=True)
class Family:
    """What tenku knows about one family of diffusers pipelines."""

    name: str
    classes: dict[str, frozenset[str]]  # folder _class_name -> tasks it supports
    fps: float  # frames per second it was trained at
    native_size: tuple[int, int]  # (width, height) it was trained at
    max_frames: int  # the longest clip it was trained on
    steps: int  # default sampler steps
    guidance: float  # default classifier-free guidance


FAMILIES = {
    f.name: f
    for f in (
        Family(
            "wan",
            {"WanPipeline": T2V | {"video-to-video"}, "WanImageToVideoPipeline": FIRST_LAST},
            fps=16.0, native_size=(832, 480), max_frames=81, steps=50, guidance=5.0,
        ),
        Family(
            "ltx",
            {
                name: T2V | FIRST_LAST | {"keyframes"}
                for name in ("LTXPipeline", "LTXImageToVideoPipeline", "LTXConditionPipeline")
            },
            fps=24.0, native_size=(768, 512), max_frames=257, steps=50, guidance=3.0,
        ),
        Family(
            "cogvideox",
            {
                "CogVideoXPipeline": frozenset({"text-to-video", "video-to-video"}),
                "CogVideoXImageToVideoPipeline": frozenset({"image-to-video"}),
            },
            fps=8.0, native_size=(720, 480), max_frames=49, steps=50, guidance=6.0,
        ),
    )
}  # fmt: skip
CLASS_FAMILY = {cls: f.name for f in FAMILIES.values() for cls in f.classes}


def family_of(path: str | Path) -> tuple[str, str]:
    """``(family, class name)`` of a diffusers folder, from its ``model_index.json``."""
    index = Path(path) / "model_index.json"
    cls = json.loads(index.read_text()).get("_class_name", "?")
    if cls not in CLASS_FAMILY:
        raise ValueError(
            f"model: {index} names {cls}; tenku runs {', '.join(sorted(CLASS_FAMILY))}"
        )
    return CLASS_FAMILY[cls], cls


def fit_image(image: np.ndarray, width: int, height: int) -> Any:
    """uint8 ``(H, W, 3)`` scaled to cover ``width x height``, centre-cropped, as a PIL image
    (the native pipeline's fit: :func:`tenku.pipelines.conditioning.fit_frames`)."""
    from PIL import Image

    return Image.fromarray(fit_frames(image[None], width, height)[0])


def fit_video(path: str, plan: Plan) -> list[Any]:
    """A source video resampled to the plan's fps (nearest frame), ``plan.frames`` long (the
    last frame held if the source is shorter) and fitted to its size: a list of PIL images."""
    from PIL import Image

    frames = fit_frames(read_frames(path, plan.fps), plan.width, plan.height)
    return [Image.fromarray(frame) for frame in fit_length(frames, plan.frames)]


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """diffusers' ``output_type="np"`` frames (float in [0, 1]) -> uint8 ``(T, H, W, 3)``."""
    return (np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8)


class DiffusersBackend(Backend):
    """A diffusers video pipeline loaded from a local folder, behind tenku's interface.

    ``pipe`` is the pipeline of the folder's own class; the sibling pipelines other tasks need
    (image-to-video, video-to-video, conditions) share its components (``from_pipe``).
    """

    def __init__(
        self,
        pipe: Any,
        *,
        name: str,
        family: str,
        folder_class: str,
        device: torch.device | str = "cpu",
        options: BackendOptions | None = None,
    ) -> None:
        self.options = options or BackendOptions()
        self.options.check(device)
        self.device = torch.device(device)
        self.spec = FAMILIES[family]
        self.family = family  # wan, ltx or cogvideox
        self.name = name
        self.pipe = pipe
        self.tasks = self.spec.classes[folder_class]
        self._derived: dict[str, Any] = {}
        self.native_size = self.spec.native_size
        self.fps, self.max_frames = self.spec.fps, self.spec.max_frames
        self.defaults = {"steps": self.spec.steps, "guidance": self.spec.guidance, "sampler": None}
        self.fixed_size: tuple[int, int] | None = None
        config = pipe.transformer.config
        if family == "wan":
            self.frame_multiple = pipe.vae_scale_factor_temporal
            self.size_multiple = pipe.vae_scale_factor_spatial * config.patch_size[1]
            if getattr(pipe.config, "expand_timesteps", False):  # Wan 2.2 TI2V-5B
                self.fps, self.max_frames, self.native_size = 24.0, 121, (1280, 704)
        elif family == "ltx":
            self.frame_multiple = pipe.vae_temporal_compression_ratio * config.patch_size_t
            self.size_multiple = pipe.vae_spatial_compression_ratio * config.patch_size
        else:
            # CogVideoX: 8k + 1 frames keeps the latent length odd, which 1.5's 2-frame patches
            # and 1.0's 49-frame training both want.
            self.frame_multiple = 8
            self.size_multiple = pipe.vae_scale_factor_spatial * config.patch_size
            if config.patch_size_t is not None:  # CogVideoX 1.5
                self.fps, self.max_frames, self.native_size = 16.0, 81, (1360, 768)
            else:
                self.max_frames = config.sample_frames
            if config.use_learned_positional_embeddings:  # 5b-I2V: one size only
                self.fixed_size = (
                    config.sample_width * pipe.vae_scale_factor_spatial,
                    config.sample_height * pipe.vae_scale_factor_spatial,
                )
        self._setup(pipe)

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        device: torch.device | str = "cpu",
        options: BackendOptions | None = None,
    ) -> DiffusersBackend:
        """Load a diffusers folder (``model_index.json``) offline, in ``options``' dtype."""
        from diffusers import DiffusionPipeline

        options = options or BackendOptions()
        options.check(device)
        path = Path(path)
        family, folder_class = family_of(path)
        pipe = DiffusionPipeline.from_pretrained(
            path, local_files_only=True, dtype=options.torch_dtype(device)
        )
        pipe.set_progress_bar_config(disable=True)
        return cls(
            pipe,
            name=path.name,
            family=family,
            folder_class=folder_class,
            device=device,
            options=options,
        )

    def _setup(self, pipe: Any) -> None:
        """Place ``pipe`` on the device (or offload it) and apply the VAE/kernel options."""
        opts = self.options
        if opts.vae_tiling:
            pipe.vae.enable_tiling()
        if opts.vae_slicing:
            pipe.vae.enable_slicing()
        if opts.offload == "model":
            pipe.enable_model_cpu_offload(device=self.device)
        elif opts.offload == "sequential":
            pipe.enable_sequential_cpu_offload(device=self.device)
        else:
            pipe.to(self.device)
        if opts.attention in EXTERNAL_ATTENTION and pipe is self.pipe:
            pipe.transformer.set_attention_backend(EXTERNAL_ATTENTION[opts.attention])
        if opts.compile and pipe is self.pipe:
            pipe.transformer.compile()

    def _pipeline(self, name: str) -> Any:
        """The loaded pipeline, or a sibling class sharing its components (``from_pipe``)."""
        if type(self.pipe).__name__ == name:
            return self.pipe
        if name not in self._derived:
            import diffusers

            derived = getattr(diffusers, name).from_pipe(self.pipe)
            derived.set_progress_bar_config(disable=True)
            if self.options.offload != "none":
                self._setup(derived)
            self._derived[name] = derived
        return self._derived[name]

    def plan(self, request: GenerationRequest) -> Plan:
        """:meth:`Backend.plan`, and refuse a sampler, a size a fixed-size model cannot make
        and a remix strength that leaves no sampler step."""
        plan = super().plan(request)
        if request.sampler is not None:
            raise ValueError(
                f"sampler: {self.name} samples with its own scheduler "
                f"({type(self.pipe.scheduler).__name__}); --sampler applies to the native model"
            )
        if self.fixed_size is not None and (plan.width, plan.height) != self.fixed_size:
            w, h = self.fixed_size
            raise ValueError(
                f"width: {self.name} generates only {w}x{h} (learned position embeddings), "
                f"got {plan.width}x{plan.height}"
            )
        steps = plan.request.steps or 0
        if request.remix is not None and int(steps * request.remix.strength) < 1:
            raise ValueError(
                f"remix.strength: {request.remix.strength:g} leaves no sampler step of {steps} "
                f"on {self.name}; use at least {1 / steps:g}"
            )
        return plan

    def call_arguments(self, plan: Plan) -> tuple[Any, dict[str, Any]]:
        """The pipeline for ``plan``'s task and its keyword arguments (conditioning included)."""
        request, task = plan.request, plan.request.task
        kwargs: dict[str, Any] = {"height": plan.height, "width": plan.width}
        images = [
            (k.at, fit_image(read_image(k.path), plan.width, plan.height))
            for k in sorted(request.keyframes, key=lambda k: k.at)
            if k.is_image
        ]
        if task == "video-to-video":
            assert request.remix is not None
            kwargs |= {
                "video": fit_video(request.remix.path, plan),
                "strength": request.remix.strength,
            }
        else:
            kwargs["num_frames"] = plan.frames
        if self.family == "wan":
            if task in FIRST_LAST:
                kwargs["image"] = images[0][1]
                if task == "first-last-frame":
                    kwargs["last_image"] = images[-1][1]
                return self._pipeline("WanImageToVideoPipeline"), kwargs
            if task == "video-to-video":
                return self._pipeline("WanVideoToVideoPipeline"), kwargs
            return self._pipeline("WanPipeline"), kwargs
        if self.family == "ltx":
            kwargs["frame_rate"] = round(plan.fps)
            if self.pipe.vae.config.timestep_conditioning:  # LTX 0.9.1+: decode with a little noise
                kwargs |= {"decode_timestep": 0.05, "decode_noise_scale": 0.025}
            if task in T2V:
                return self._pipeline("LTXPipeline"), kwargs
            if len(images) != len(request.keyframes):
                raise ValueError(f"keyframes: {self.name} takes images only, not video clips")
            last = plan.frames - 1
            kwargs["image"] = [image for _, image in images]
            kwargs["frame_index"] = [min(round(at * plan.fps), last) for at, _ in images]
            kwargs["strength"] = [1.0] * len(images)
            return self._pipeline("LTXConditionPipeline"), kwargs
        kwargs["max_sequence_length"] = self.pipe.transformer.config.max_text_seq_length
        if task == "image-to-video":
            kwargs["image"] = images[0][1]
            return self._pipeline("CogVideoXImageToVideoPipeline"), kwargs
        if task == "video-to-video":
            return self._pipeline("CogVideoXVideoToVideoPipeline"), kwargs
        return self._pipeline("CogVideoXPipeline"), kwargs

    def run(
        self, plan: Plan, *, progress: bool = False, callback: StepCallback | None = None
    ) -> list[GeneratedVideo]:
        request = plan.request
        assert request.steps is not None and request.guidance is not None
        start = time.perf_counter()
        pipe, kwargs = self.call_arguments(plan)
        timings = {"inputs": time.perf_counter() - start, "generate": 0.0}
        total = request.steps * len(plan.seeds)
        bar = tqdm(total=total, desc="generate", unit="step", disable=not progress)
        videos = []
        for k, seed in enumerate(plan.seeds):  # one at a time: a seed gives the same video alone

            def on_step(p: Any, i: int, t: Any, tensors: dict, k: int = k) -> dict:
                steps = getattr(p, "num_timesteps", None) or request.steps
                done = k * request.steps + round((i + 1) * request.steps / steps)
                bar.update(done - bar.n)
                if callback is not None:
                    callback(done, total)
                return tensors

            start = time.perf_counter()
            with torch.inference_mode(), sdpa_kernel(self.options.attention):
                out = pipe(
                    prompt=request.prompt,
                    num_inference_steps=request.steps,
                    guidance_scale=request.guidance,
                    generator=torch.Generator("cpu").manual_seed(seed),  # same noise on any device
                    output_type="np",
                    callback_on_step_end=on_step,
                    **kwargs,
                )
            timings["generate"] += time.perf_counter() - start
            frames = to_uint8(np.asarray(out.frames[0]))  # (T, H, W, 3)
            videos.append((seed, frames))
        bar.close()
        return [
            GeneratedVideo(
                frames=frames,
                fps=plan.fps,
                request=replace(request, seed=seed, variations=1),
                model=self.name,
                timings=dict(timings),
            )
            for seed, frames in videos
        ]
