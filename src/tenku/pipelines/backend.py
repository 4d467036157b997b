"""One interface for every model tenku runs: the native transformer and diffusers' open weights.

A :class:`Backend` turns a :class:`GenerationRequest` into videos. It declares what it can do
(``tasks``: values of ``GenerationRequest.task``) and how a request maps onto it (:meth:`plan`:
the size snapped to its multiple, seconds turned into frames at its frame rate and frame rule,
the seed fixed, steps and guidance filled from its defaults), then :meth:`run` generates the
plan. :meth:`generate` is the two in a row, and refuses a task the backend cannot do with a
ValueError that names the backend and the task.

:class:`BackendOptions` are the GPU options (dtype, offload, VAE tiling and slicing,
torch.compile, attention kernel); :meth:`BackendOptions.check` refuses those that need CUDA
when the device has none. :class:`NativeBackend` is a thin adapter over :class:`TenkuPipeline`;
the diffusers families live in :mod:`tenku.pipelines.diffusers_backend`, and
:func:`tenku.pipelines.registry.load_backend` picks one from a folder or a name.
"""

from __future__ import annotations

import contextlib
import secrets
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from tenku.pipelines.pipeline import GeneratedVideo, StepCallback, TenkuPipeline
from tenku.pipelines.request import LIMITS, GenerationRequest, frames_for

TASKS = (
    "text-to-video",
    "text-to-image",
    "image-to-video",
    "first-last-frame",
    "keyframes",
    "video-to-video",
    "blend",
    "storyboard",
    "loop",
)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
OFFLOAD = ("none", "model", "sequential")
# SDPA kernels (any model, via torch.nn.attention.sdpa_kernel) and, for diffusers models, the
# kernels of other packages (set_attention_backend): "sage" needs sageattention, "flash-attn"
# the flash-attn package.
SDPA_KERNELS = ("math", "flash", "efficient", "cudnn")
ATTENTION = ("auto", *SDPA_KERNELS, "sage", "flash-attn")


@dataclass(frozen=True)
class BackendOptions:
    """How a backend runs on its device: precision, memory savers and kernels."""

    dtype: str | None = None  # one of DTYPES; None: bfloat16 on CUDA, float32 elsewhere
    offload: str = "none"  # "model": whole models to the GPU in turn; "sequential": layer by layer
    vae_tiling: bool = False  # decode (and encode) the VAE in overlapping spatial tiles
    vae_slicing: bool = False  # decode the VAE one video of a batch at a time
    compile: bool = False  # torch.compile the transformer (first step slow, later ones faster)
    attention: str = "auto"  # one of ATTENTION; "auto": torch picks the SDPA kernel

    def check(self, device: torch.device | str) -> None:
        """Raise a ValueError naming the option that is unknown or needs CUDA on ``device``."""
        device = torch.device(device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device: cuda is not available (this torch sees no CUDA device)")
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ValueError(f"dtype: {self.dtype!r} is not one of {sorted(DTYPES)}")
        if self.offload not in OFFLOAD:
            raise ValueError(f"offload: {self.offload!r} is not one of {list(OFFLOAD)}")
        if self.attention not in ATTENTION:
            raise ValueError(f"attention: {self.attention!r} is not one of {list(ATTENTION)}")
        if device.type == "cuda":
            return
        if self.dtype == "float16":
            raise ValueError(
                f"dtype: float16 needs a CUDA device; on {device} use float32 or bfloat16"
            )
        if self.offload != "none":
            raise ValueError(f"offload: {self.offload} offload needs a CUDA device (--device cuda)")
        if self.compile:
            raise ValueError("compile: torch.compile of the transformer needs a CUDA device")
        if self.attention not in ("auto", "math"):
            raise ValueError(
                f"attention: {self.attention} needs a CUDA device; on CPU use auto or math"
            )

    def torch_dtype(self, device: torch.device | str) -> torch.dtype:
        """The dtype to load weights in (``dtype``, or the device's default)."""
        if self.dtype is not None:
            return DTYPES[self.dtype]
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32


@contextlib.contextmanager
def sdpa_kernel(attention: str) -> Iterator[None]:
    """Restrict torch's scaled-dot-product attention to one kernel (no-op for other choices)."""
    if attention not in SDPA_KERNELS:
        yield
        return
    from torch.nn.attention import SDPBackend
    from torch.nn.attention import sdpa_kernel as kernel

    names = {"math": "MATH", "flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION"}
    with kernel(getattr(SDPBackend, names.get(attention, "CUDNN_ATTENTION"))):
        yield


@dataclass(frozen=True)
class Plan:
    """A request as one backend will run it: every number fixed, ready for :meth:`Backend.run`."""

    request: GenerationRequest  # resolved: seed, steps, guidance, size and fps as generated
    width: int  # pixels
    height: int  # pixels
    frames: int  # frames per video (the backend's frame rule)
    fps: float  # frames per second of the output
    seeds: tuple[int, ...]  # one per video: request.seed, request.seed + 1, ...


def snap(value: int, multiple: int) -> int:
    """``value`` rounded to the nearest multiple of ``multiple`` (ties up), at least one step."""
    return max(multiple, (value + multiple // 2) // multiple * multiple)


class Backend(ABC):
    """A model that generates videos from requests; see the module docstring."""

    family: str  # "native", "wan", "ltx", "cogvideox"
    name: str  # the model's name, recorded in every output's sidecar
    tasks: frozenset[str]  # the GenerationRequest.task values this model can do
    native_size: tuple[int, int] | None  # (width, height) it was trained at (None: any)
    fps: float | None  # frames per second it generates at (None: the request's)
    frame_multiple: int  # frames per video are 1 + frame_multiple * k
    size_multiple: int  # width and height are snapped to multiples of this
    max_frames: int | None  # the longest clip it makes (None: no limit of its own)
    defaults: dict[str, Any]  # "steps", "guidance", "sampler" for requests that leave them out

    def check_task(self, request: GenerationRequest) -> None:
        """Raise a ValueError naming the backend and the task if it cannot do ``request``."""
        if request.task not in self.tasks:
            supported = ", ".join(t for t in TASKS if t in self.tasks)
            raise ValueError(
                f"model: {self.name} ({self.family}) cannot do {request.task}; "
                f"it supports {supported}"
            )

    def plan(self, request: GenerationRequest) -> Plan:
        """Map ``request`` onto this backend (see :class:`Plan`); raise ValueError if it can't."""
        self.check_task(request)
        fps = request.fps if self.fps is None else self.fps
        frames = frames_for(request.seconds, fps, self.frame_multiple)
        if self.max_frames is not None and frames > self.max_frames:
            longest = (self.max_frames - 1) / fps
            raise ValueError(
                f"seconds: {self.name} makes at most {self.max_frames} frames ({longest:g} s at "
                f"{fps:g} fps); {request.seconds:g} s needs {frames}"
            )
        width, height = (snap(v, self.size_multiple) for v in (request.width, request.height))
        low, high = LIMITS["width"]
        width, height = (min(max(v, low), high) for v in (width, height))
        seed = request.seed if request.seed is not None else secrets.randbelow(2**31)
        resolved = replace(
            request.resolved(self.defaults, seed), width=width, height=height, fps=fps
        )
        seeds = tuple(seed + i for i in range(request.variations))
        return Plan(resolved, width, height, frames, fps, seeds)

    @abstractmethod
    def run(
        self, plan: Plan, *, progress: bool = False, callback: StepCallback | None = None
    ) -> list[GeneratedVideo]:
        """Generate one video per seed of ``plan``: frames uint8 ``(T, H, W, 3)`` each."""

    def generate(
        self,
        request: GenerationRequest,
        *,
        progress: bool = False,
        callback: StepCallback | None = None,
    ) -> list[GeneratedVideo]:
        """``request.variations`` videos, each with its resolved request (seed filled in).

        ``callback(done, total)`` is called after every sampler step of every video.
        """
        return self.run(self.plan(request), progress=progress, callback=callback)

    def describe(self) -> dict[str, Any]:
        """What this backend is and can do, as plain data (``tenku models --json``)."""
        return {
            "name": self.name,
            "family": self.family,
            "tasks": [t for t in TASKS if t in self.tasks],
            "native_size": list(self.native_size) if self.native_size else None,
            "fps": self.fps,
            "frames": f"1 + {self.frame_multiple}k"
            + (f", at most {self.max_frames}" if self.max_frames else ""),
            "size_multiple": self.size_multiple,
            "defaults": self.defaults,
        }


class NativeBackend(Backend):
    """tenku's own model (:class:`TenkuPipeline`): every task it handles, at any size and fps.

    All request tasks are passed through; ``TenkuPipeline.generate`` raises for those it does
    not handle yet. Options: ``dtype`` runs the pipeline under autocast, ``compile`` compiles
    the transformer, ``attention`` picks the SDPA kernel; offload and VAE tiling/slicing do
    not apply to a model this small and are refused.
    """

    family = "native"

    def __init__(self, pipe: TenkuPipeline, *, options: BackendOptions | None = None) -> None:
        self.pipe = pipe
        self.options = options or BackendOptions()
        self.options.check(pipe.device)
        for flag, on in (
            ("offload", self.options.offload != "none"),
            ("vae-tiling", self.options.vae_tiling),
            ("vae-slicing", self.options.vae_slicing),
            ("attention", self.options.attention not in ("auto", *SDPA_KERNELS)),
        ):
            if on:
                raise ValueError(f"{flag}: applies to diffusers models, not the native model")
        if self.options.compile:
            pipe.transformer.compile()
        self.name = pipe.name
        self.tasks = frozenset(TASKS)
        self.native_size = None
        self.fps = None
        self.frame_multiple = pipe.vae.config.temporal_compression
        self.size_multiple = 16
        self.max_frames = None
        self.defaults = dict(pipe.defaults)

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        *,
        device: torch.device | str = "cpu",
        options: BackendOptions | None = None,
    ) -> NativeBackend:
        """Load a native model folder (``pipeline.json``; None: the shipped default)."""
        (options or BackendOptions()).check(device)
        return cls(TenkuPipeline.from_pretrained(path, device=device), options=options)

    def plan(self, request: GenerationRequest) -> Plan:
        """The request as given (the native model takes any valid size and fps)."""
        seed = request.seed if request.seed is not None else secrets.randbelow(2**31)
        resolved = request.resolved(self.defaults, seed)
        seeds = tuple(seed + i for i in range(request.variations))
        return Plan(resolved, request.width, request.height, request.frames, request.fps, seeds)

    def run(
        self, plan: Plan, *, progress: bool = False, callback: StepCallback | None = None
    ) -> list[GeneratedVideo]:
        device = self.pipe.device
        dtype = self.options.torch_dtype(device)
        autocast = (
            torch.autocast(device.type, dtype=dtype)
            if dtype != torch.float32
            else contextlib.nullcontext()
        )
        with autocast, sdpa_kernel(self.options.attention):
            return self.pipe.generate(plan.request, progress=progress, callback=callback)
