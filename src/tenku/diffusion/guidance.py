"""Classifier-free guidance: the one wrapper between a velocity model and the samplers.

Conventions (see :mod:`tenku.diffusion.flow`): latents are ``(B, C, T, H, W)``, the model is
``model(x, t, **extra_args) -> v`` with ``t`` a ``(B,)`` tensor and ``v = noise - x0`` the
velocity; ``t = 1`` is pure noise. Guidance extrapolates from the unconditional velocity toward
the conditional one: ``v = v_uncond + scale * (v_cond - v_uncond)``. The model is trained for both
by dropping the condition at random (:func:`drop_condition`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from tenku.diffusion.flow import Denoiser

GuidanceSchedule = Callable[[float], float]  # t -> scale


def _expand_batch(value: Any, batch: int) -> Any:
    """A tensor with batch 1 expanded to ``batch``; anything else unchanged."""
    if isinstance(value, Tensor) and value.ndim > 0 and value.shape[0] == 1:
        return value.expand(batch, *value.shape[1:])
    return value


def _batch_pair(key: str, cond: Any, uncond: Any, batch: int) -> Any:
    """One extra-arg value for the doubled batch: ``cat([cond, uncond])`` for tensors."""
    if isinstance(cond, Tensor) != isinstance(uncond, Tensor):
        raise TypeError(f"cond and uncond disagree on whether {key!r} is a tensor")
    if not isinstance(cond, Tensor):
        if cond != uncond:
            raise ValueError(f"non-tensor extra arg {key!r} differs between cond and uncond")
        return cond
    cond, uncond = _expand_batch(cond, batch), _expand_batch(uncond, batch)
    if cond.shape != uncond.shape or cond.shape[0] != batch:
        raise ValueError(
            f"{key!r}: cond {tuple(cond.shape)} and uncond {tuple(uncond.shape)} must share one "
            f"shape with batch {batch} or 1 (pad text embeddings to one length)"
        )
    return torch.cat([cond, uncond])


class CFGDenoiser:
    """Classifier-free guidance around a velocity model, in one batched forward per call.

    model: ``model(x, t, **extra_args) -> v``.
    cond, uncond: extra-args dicts for the conditional and unconditional passes (text embeddings,
        attention masks, ...), with the same keys. Tensors have batch ``B`` or 1 and are
        concatenated along dim 0; other values must be equal in both and are passed as they are.
    scale: the guidance scale; 1 means no guidance and skips the unconditional pass.
    schedule: optional ``t -> scale`` (``t`` a float in [0, 1]) replacing ``scale`` per step,
        e.g. :func:`guidance_interval`.

    Calling it as ``denoiser(x, t, **extra)`` with ``x`` ``(B, C, T, H, W)`` and ``t`` ``(B,)``
    (one time for the whole batch, as in sampling) returns the guided ``(B, C, T, H, W)``
    velocity. Tensors in ``extra`` (per-sample inputs such as a context mask) have batch ``B``
    and are repeated for both halves.
    """

    def __init__(
        self,
        model: Denoiser,
        cond: Mapping[str, Any],
        uncond: Mapping[str, Any],
        scale: float = 1.0,
        schedule: GuidanceSchedule | None = None,
    ) -> None:
        if set(cond) != set(uncond):
            raise ValueError(f"cond keys {sorted(cond)} != uncond keys {sorted(uncond)}")
        self.model = model
        self.cond = dict(cond)
        self.uncond = dict(uncond)
        self.scale = scale
        self.schedule = schedule

    def scale_at(self, t: float) -> float:
        """The guidance scale used at time ``t``."""
        return float(self.schedule(t)) if self.schedule is not None else float(self.scale)

    def __call__(self, x: Tensor, t: Tensor, **extra: Any) -> Tensor:
        """Guided velocity; x: ``(B, C, T, H, W)``, t: ``(B,)`` -> ``(B, C, T, H, W)``."""
        scale = self.scale_at(float(t.flatten()[0]))
        if clash := set(extra) & set(self.cond):
            raise ValueError(f"extra args {sorted(clash)} are already set by cond/uncond")
        batch = x.shape[0]
        if scale == 1.0:
            cond = {k: _expand_batch(v, batch) for k, v in self.cond.items()}
            return self.model(x, t, **cond, **extra)
        args = {k: _batch_pair(k, self.cond[k], self.uncond[k], batch) for k in self.cond}
        for k, value in extra.items():
            args[k] = torch.cat([value, value]) if isinstance(value, Tensor) else value
        v_cond, v_uncond = self.model(torch.cat([x, x]), torch.cat([t, t]), **args).chunk(2)
        return v_uncond + scale * (v_cond - v_uncond)


def guidance_interval(scale: float, *, t_min: float = 0.0, t_max: float = 1.0) -> GuidanceSchedule:
    """A schedule that guides with ``scale`` only for ``t_min <= t <= t_max`` and is 1 elsewhere.

    Guiding only in the middle of the noise range (Kynkäänniemi et al. 2024) keeps the diversity
    that guidance at high noise removes and saves the unconditional pass where it is off.
    """

    def schedule(t: float) -> float:
        return scale if t_min <= t <= t_max else 1.0

    return schedule


class MixedDenoiser:
    """Two denoisers mixed per position: ``(1 - weight) * a(x, t) + weight * b(x, t)``.

    ``weight`` broadcasts against the velocity, e.g. ``(1, 1, T, 1, 1)`` for one weight per latent
    frame: blending two prompts along a clip, or switching storyboard cards mid-window. Where the
    weight is 0 or 1 everywhere only one denoiser runs.
    """

    def __init__(self, a: Denoiser, b: Denoiser, weight: Tensor) -> None:
        if float(weight.min()) < 0.0 or float(weight.max()) > 1.0:
            raise ValueError("weight: must lie in [0, 1]")
        self.a, self.b, self.weight = a, b, weight

    def __call__(self, x: Tensor, t: Tensor, **extra: Any) -> Tensor:
        if not bool(self.weight.any()):
            return self.a(x, t, **extra)
        if bool((self.weight == 1).all()):
            return self.b(x, t, **extra)
        w = self.weight.to(x.dtype)
        return torch.lerp(self.a(x, t, **extra), self.b(x, t, **extra), w)


def sdedit_start(
    x0: Tensor, noise: Tensor, sigmas: Tensor, strength: float
) -> tuple[Tensor, Tensor]:
    """SDEdit (Meng et al. 2022) on a rectified flow: start from ``x0`` noised to ``strength``.

    Returns ``(x, sigmas)``: ``x = (1 - s) * x0 + s * noise`` and the part of the grid below
    ``s`` with ``s`` in front, so sampling spends only the steps that ``strength`` leaves.
    ``strength`` 1 is plain sampling from noise; 0 returns ``x0`` with no step.
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength: {strength} is outside [0, 1]")
    rest = sigmas[sigmas < strength]
    grid = torch.cat([sigmas.new_tensor([strength]), rest])
    return torch.lerp(x0, noise, strength), grid


def drop_condition(
    mask_prob: float,
    batch: int,
    generator: torch.Generator | None = None,
    *,
    device: torch.device | str | None = None,
) -> Tensor:
    """``(batch,)`` bool mask, True with probability ``mask_prob``: samples whose condition
    (text) is replaced by the unconditional one during training, so that the same model also
    learns ``v_uncond`` for classifier-free guidance."""
    if not 0.0 <= mask_prob <= 1.0:
        raise ValueError(f"mask_prob must be in [0, 1], got {mask_prob}")
    return torch.rand(batch, generator=generator, device=device) < mask_prob
