"""Rectified-flow schedule and training loss.

Conventions used by everything in ``tenku.diffusion``:

- video latents are ``(B, C, T, H, W)``; the functions here accept any ``(B, ...)`` tensor;
- time ``t`` lies in ``[0, 1]`` and ``x_t = (1 - t) * x0 + t * noise``: ``t = 0`` is data,
  ``t = 1`` is pure Gaussian noise;
- the model predicts the velocity ``v = dx_t/dt = noise - x0``, so the clean estimate at time
  ``t`` is ``x0_hat = x_t - t * v``;
- sampling integrates from ``t = 1`` down to ``0`` with ``x <- x + (t_next - t) * v``;
- a denoiser is any callable ``model(x, t, **extra_args) -> v`` where ``t`` is a ``(B,)`` tensor.

The timestep shift (SD3, Esser et al. 2024) ``shift * t / (1 + (shift - 1) * t)`` moves both the
training times and the sampling grid toward the noise end. Bigger and longer videos carry more
redundant tokens, so the same ``t`` destroys less of their content; :func:`resolution_shift`
picks a larger shift for them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

Denoiser = Callable[..., Tensor]  # model(x (B, ...), t (B,), **extra_args) -> v (B, ...)


def shift_time(t: Tensor | float, shift: float) -> Tensor | float:
    """Shift times toward the noise end: ``shift * t / (1 + (shift - 1) * t)``.

    ``shift = 1`` is the identity; any ``shift > 0`` keeps ``0`` and ``1`` fixed and is monotone.
    ``t``: a float or a tensor of any shape; returns the same kind and shape.
    """
    if shift <= 0:
        raise ValueError(f"shift must be positive, got {shift}")
    return shift * t / (1 + (shift - 1) * t)


def resolution_shift(
    num_tokens: int,
    *,
    base_tokens: int = 256,
    base_shift: float = 1.0,
    max_tokens: int = 4096,
    max_shift: float = 3.0,
) -> float:
    """The timestep shift for a latent of ``num_tokens`` tokens (patches over T, H and W).

    ``mu = log(shift)`` is interpolated linearly in ``log(num_tokens)`` between
    ``(base_tokens, log(base_shift))`` and ``(max_tokens, log(max_shift))`` and clamped to that
    range, so the shift grows with the size and length of the video and stays in
    ``[base_shift, max_shift]``.
    """
    if num_tokens <= 0 or base_tokens <= 0 or max_tokens <= base_tokens:
        raise ValueError("need num_tokens > 0 and 0 < base_tokens < max_tokens")
    if base_shift <= 0 or max_shift < base_shift:
        raise ValueError("need 0 < base_shift <= max_shift")
    frac = math.log(num_tokens / base_tokens) / math.log(max_tokens / base_tokens)
    frac = min(max(frac, 0.0), 1.0)
    mu = math.log(base_shift) + frac * (math.log(max_shift) - math.log(base_shift))
    return math.exp(mu)


def sample_train_t(
    batch: int,
    *,
    shift: float,
    generator: torch.Generator | None = None,
    loc: float = 0.0,
    scale: float = 1.0,
    device: torch.device | str | None = None,
) -> Tensor:
    """Training times: logit-normal ``sigmoid(N(loc, scale^2))``, then :func:`shift_time`.

    Returns a ``(batch,)`` float32 tensor with values in ``(0, 1)``.
    """
    z = torch.randn(batch, generator=generator, device=device) * scale + loc
    return shift_time(torch.sigmoid(z), shift)


def flow_sigmas(
    steps: int,
    *,
    shift: float = 1.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """The sampling grid: ``(steps + 1,)`` times from exactly 1 down to exactly 0.

    A uniform grid in ``[1, 0]`` passed through :func:`shift_time`; strictly decreasing.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    grid = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    return shift_time(grid, shift).to(device=device, dtype=dtype)


@dataclass(frozen=True)
class FlowLossInfo:
    """What :func:`flow_loss` used and measured, for logging the loss by time."""

    t: Tensor  # (B,) the times used
    per_sample: Tensor  # (B,) masked mean squared velocity error of each sample (detached)


def _expand_like(t: Tensor, x: Tensor) -> Tensor:
    """``(B,)`` -> ``(B, 1, ..., 1)`` with ``x.ndim`` dimensions."""
    return t.reshape(-1, *([1] * (x.ndim - 1)))


def flow_loss(
    model: Denoiser,
    x0: Tensor,
    *,
    t: Tensor | None = None,
    noise: Tensor | None = None,
    shift: float = 1.0,
    loss_mask: Tensor | None = None,
    generator: torch.Generator | None = None,
    extra_args: dict[str, Any] | None = None,
) -> tuple[Tensor, FlowLossInfo]:
    """Rectified-flow loss: mean squared error between ``model(x_t, t)`` and ``noise - x0``.

    x0: clean latents ``(B, C, T, H, W)`` (any ``(B, ...)`` shape works).
    t: ``(B,)`` times; drawn with :func:`sample_train_t` (logit-normal, shifted) when None.
    noise: like ``x0``; standard normal when None.
    loss_mask: broadcastable to ``x0``, e.g. ``(B, 1, T, 1, 1)``; 1 = generate and learn,
        0 = given context (e.g. the first frame for image-to-video). Context positions of
        ``x_t`` hold the clean ``x0`` (the model sees the given frames, as at sampling time) and
        are left out of the loss. Pass the mask to the model through ``extra_args`` if it needs it.
    extra_args: keyword arguments for the model (text embeddings, the mask, ...).

    The squared error is averaged over the learnt positions of each sample, then over the batch
    (a sample with nothing to learn counts as 0). Returns the scalar loss and a
    :class:`FlowLossInfo` with ``t`` and the ``(B,)`` per-sample losses.
    """
    batch = x0.shape[0]
    if t is None:
        t = sample_train_t(batch, shift=shift, generator=generator, device=x0.device)
    if t.shape != (batch,):
        raise ValueError(f"t must have shape ({batch},), got {tuple(t.shape)}")
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    t = t.to(device=x0.device, dtype=x0.dtype)
    t_b = _expand_like(t, x0)  # (B, 1, 1, 1, 1)
    x_t = (1 - t_b) * x0 + t_b * noise
    target = noise - x0
    if loss_mask is None:
        mask = torch.ones((), device=x0.device, dtype=x0.dtype).expand_as(x0)
    else:
        mask = loss_mask.to(device=x0.device, dtype=x0.dtype).expand_as(x0)
        x_t = x0 + mask * (x_t - x0)  # context positions are given clean
    v = model(x_t, t, **(extra_args or {}))
    if v.shape != x0.shape:
        raise ValueError(f"model returned {tuple(v.shape)}, expected {tuple(x0.shape)}")
    err = (v.float() - target.float()).square() * mask.float()
    per_sample = err.flatten(1).sum(1) / mask.float().flatten(1).sum(1).clamp_min(1.0)  # (B,)
    loss = per_sample.mean()
    return loss, FlowLossInfo(t=t.detach(), per_sample=per_sample.detach())
