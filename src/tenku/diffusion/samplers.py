"""Samplers: pure functions that integrate the rectified-flow ODE from t = 1 down to t = 0.

Conventions (see :mod:`tenku.diffusion.flow`): latents ``x`` are ``(B, C, T, H, W)`` (any
``(B, ...)`` shape works); ``x_t = (1 - t) * x0 + t * noise``; the model predicts the velocity
``v = noise - x0`` and is called as ``model(x, t, **extra_args)`` with ``t`` a ``(B,)`` tensor;
the clean estimate is ``denoised = x - t * v``.

Every sampler has the signature ``sample_*(model, x, sigmas, *, extra_args=None, callback=None)``
where ``x`` is the starting latent at time ``sigmas[0]`` (pure noise when ``sigmas[0] == 1``;
a partly noised latent for SDEdit-style remix) and ``sigmas`` is the decreasing time grid
(:func:`~tenku.diffusion.flow.flow_sigmas`) ending at 0. Each returns the final ``x``.

After every step ``callback`` receives a dict with ``i`` (step index), ``x`` (the new state, at
time ``t_next``), ``t`` and ``t_next`` (the step's start and end times, floats), ``v`` (the
velocity evaluated at the start of the step) and ``denoised`` (``x0`` estimated at the start).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from tenku.diffusion.flow import Denoiser

Callback = Callable[[dict[str, Any]], None]
Sampler = Callable[..., Tensor]


def _velocity(model: Denoiser, x: Tensor, t: float, extra_args: dict[str, Any]) -> Tensor:
    """``model(x, t)`` with ``t`` broadcast to a ``(B,)`` tensor in ``x``'s dtype."""
    return model(x, x.new_full((x.shape[0],), t), **extra_args)


def _report(
    callback: Callback | None, i: int, x: Tensor, t: float, t_next: float, v: Tensor, x_prev: Tensor
) -> None:
    if callback is not None:
        callback(
            {"i": i, "x": x, "t": t, "t_next": t_next, "v": v, "denoised": x_prev - t * v},
        )


def _steps(sigmas: Tensor) -> list[tuple[float, float]]:
    """``(t, t_next)`` pairs of the grid, as floats."""
    if sigmas.ndim != 1 or sigmas.numel() < 2:
        raise ValueError("sigmas must be a 1-D tensor with at least two times")
    return list(itertools.pairwise(float(s) for s in sigmas))


@torch.no_grad()
def sample_euler(
    model: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """First-order Euler: ``x <- x + (t_next - t) * v(x, t)``; one model call per step.

    x: ``(B, C, T, H, W)`` latent at time ``sigmas[0]``; sigmas: ``(steps + 1,)`` decreasing
    times. Returns the ``(B, C, T, H, W)`` latent at ``sigmas[-1]``.
    """
    extra_args = extra_args or {}
    for i, (t, t_next) in enumerate(_steps(sigmas)):
        v = _velocity(model, x, t, extra_args)
        x_prev, x = x, x + (t_next - t) * v
        _report(callback, i, x, t, t_next, v, x_prev)
    return x


@torch.no_grad()
def sample_heun(
    model: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """Heun's second-order method (trapezoid on an Euler predictor); two model calls per step.

    The last step, to ``t_next == 0``, is a plain Euler step (one call). Shapes as
    :func:`sample_euler`.
    """
    extra_args = extra_args or {}
    for i, (t, t_next) in enumerate(_steps(sigmas)):
        v = _velocity(model, x, t, extra_args)
        x_euler = x + (t_next - t) * v
        if t_next == 0:
            x_new = x_euler
        else:
            v_next = _velocity(model, x_euler, t_next, extra_args)
            x_new = x + (t_next - t) * (v + v_next) / 2
        x_prev, x = x, x_new
        _report(callback, i, x, t, t_next, v, x_prev)
    return x


def _half_log_snr(t: float) -> float:
    """``lambda(t) = log(alpha / sigma) = log((1 - t) / t)``; -inf at t = 1, +inf at t = 0."""
    if t >= 1:
        return -math.inf
    if t <= 0:
        return math.inf
    return math.log((1 - t) / t)


@torch.no_grad()
def sample_dpmpp_2m(
    model: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022): multistep, second order, one model call per step.

    With ``alpha = 1 - t`` and ``sigma = t`` its first-order update is exactly the Euler step,
    ``x <- (t_next / t) * x + (1 - t_next / t) * denoised``; from the second finite step on,
    ``denoised`` is replaced by a linear extrapolation from the previous step's estimate in
    ``lambda = log((1 - t) / t)``. Steps from ``t = 1`` or to ``t = 0`` are first order.
    Shapes as :func:`sample_euler`.
    """
    extra_args = extra_args or {}
    old_denoised: Tensor | None = None
    h_last = math.inf
    for i, (t, t_next) in enumerate(_steps(sigmas)):
        v = _velocity(model, x, t, extra_args)
        denoised = x - t * v
        h = _half_log_snr(t_next) - _half_log_snr(t)
        d = denoised
        if old_denoised is not None and math.isfinite(h) and math.isfinite(h_last):
            r = h_last / h
            d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
        ratio = t_next / t
        x_prev, x = x, ratio * x + (1 - ratio) * d
        _report(callback, i, x, t, t_next, v, x_prev)
        old_denoised, h_last = denoised, h
    return x


SAMPLERS: dict[str, Sampler] = {
    "euler": sample_euler,
    "heun": sample_heun,
    "dpmpp_2m": sample_dpmpp_2m,
}
