"""What a user asks for: one validated request object shared by the library and the CLI.

Every field is checked with an error that names the field and its limit, before any work.
Sizes are in pixels (multiples of 16: the VAE's 8x times the transformer's 2x patches);
duration in seconds becomes ``1 + 4k`` frames (the VAE's causal 4x time compression).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from tenku.diffusion.samplers import SAMPLERS

ASPECTS = {"1:1": (1, 1), "16:9": (16, 9), "9:16": (9, 16)}
LIMITS = {
    "seconds": (0.5, 8.0),
    "fps": (1.0, 30.0),
    "width": (64, 512),
    "height": (64, 512),
    "steps": (1, 200),
    "guidance": (0.0, 20.0),
    "variations": (1, 8),
    "prompt": (1, 1000),  # characters
}
MAX_SEED = 2**63 - 1


def size_for(aspect: str, resolution: int) -> tuple[int, int]:
    """``(width, height)`` for an aspect ratio and the short side ``resolution``.

    The long side is rounded to the nearest multiple of 16: ``16:9`` at 128 is 224x128.
    """
    if aspect not in ASPECTS:
        raise ValueError(f"aspect: {aspect!r} is not one of {sorted(ASPECTS)}")
    if resolution % 16 or not LIMITS["height"][0] <= resolution <= LIMITS["height"][1]:
        raise ValueError(
            f"resolution: {resolution} must be a multiple of 16 in "
            f"[{LIMITS['height'][0]}, {LIMITS['height'][1]}]"
        )
    a, b = ASPECTS[aspect]
    long = max(16, round(resolution * max(a, b) / min(a, b) / 16) * 16)
    long = min(long, LIMITS["width"][1])
    return (long, resolution) if a >= b else (resolution, long)


def frames_for(seconds: float, fps: float) -> int:
    """Frames of a clip of ``seconds`` at ``fps``: the nearest ``1 + 4k`` to ``seconds * fps + 1``.

    4 s at 8 fps is 33 frames (4.0 s of motion between the first and last frame).
    """
    return 1 + 4 * max(1, round(seconds * fps / 4))


@dataclass(frozen=True)
class GenerationRequest:
    """Text to video. ``None`` fields take the model's defaults (see :meth:`resolved`)."""

    prompt: str
    seconds: float = 4.0
    width: int = 128
    height: int = 128
    fps: float = 8.0
    seed: int | None = None  # None: a random seed, recorded in the result
    steps: int | None = None  # sampler steps (None: the model's default)
    guidance: float | None = None  # classifier-free guidance scale (None: the model's)
    sampler: str | None = None  # one of SAMPLERS (None: the model's)
    variations: int = 1  # videos from seeds seed, seed + 1, ...

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise a ValueError naming the first field outside its limits."""
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise ValueError("prompt: must be a non-empty string")
        if len(self.prompt) > LIMITS["prompt"][1]:
            raise ValueError(f"prompt: at most {LIMITS['prompt'][1]} characters")
        for name in ("seconds", "fps", "width", "height", "steps", "guidance", "variations"):
            value = getattr(self, name)
            if value is None:
                continue
            low, high = LIMITS[name]
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{name}: must be a finite number, got {value}")
            if not low <= value <= high:
                raise ValueError(f"{name}: {value} is outside [{low}, {high}]")
        for name in ("width", "height"):
            if getattr(self, name) % 16:
                raise ValueError(f"{name}: {getattr(self, name)} must be a multiple of 16")
        if self.sampler is not None and self.sampler not in SAMPLERS:
            raise ValueError(f"sampler: {self.sampler!r} is not one of {sorted(SAMPLERS)}")
        if self.seed is not None and not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed: {self.seed} is outside [0, 2**63 - 1]")

    @property
    def frames(self) -> int:
        return frames_for(self.seconds, self.fps)

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    def resolved(self, defaults: dict[str, Any], seed: int) -> GenerationRequest:
        """This request with every ``None`` filled from ``defaults`` and the seed fixed."""
        fill = {
            k: defaults[k] for k in ("steps", "guidance", "sampler") if getattr(self, k) is None
        }
        return replace(self, seed=seed if self.seed is None else self.seed, **fill)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
