"""Rectified flow for tenku: the schedule and loss, pure sampler functions, guidance.

Video latents are ``(B, C, T, H, W)``; time ``t`` in ``[0, 1]`` with
``x_t = (1 - t) * x0 + t * noise`` (``t = 1`` is pure noise); the model predicts the velocity
``v = noise - x0``; sampling integrates from ``t = 1`` down to 0 with
``x <- x + (t_next - t) * v``. A denoiser is any callable ``model(x, t, **extra_args) -> v``
where ``t`` is a ``(B,)`` tensor.

Sampling, in short::

    sigmas = flow_sigmas(steps, shift=resolution_shift(num_tokens))
    denoiser = CFGDenoiser(model, cond={"text": emb}, uncond={"text": null_emb}, scale=5.0)
    x0 = SAMPLERS["euler"](denoiser, noise, sigmas)
"""

from tenku.diffusion.flow import (
    Denoiser,
    FlowLossInfo,
    flow_loss,
    flow_sigmas,
    resolution_shift,
    sample_train_t,
    shift_time,
)
from tenku.diffusion.guidance import (
    CFGDenoiser,
    MixedDenoiser,
    drop_condition,
    guidance_interval,
    sdedit_start,
)
from tenku.diffusion.samplers import SAMPLERS, sample_dpmpp_2m, sample_euler, sample_heun

__all__ = [
    "SAMPLERS",
    "CFGDenoiser",
    "Denoiser",
    "FlowLossInfo",
    "MixedDenoiser",
    "drop_condition",
    "flow_loss",
    "flow_sigmas",
    "guidance_interval",
    "resolution_shift",
    "sample_dpmpp_2m",
    "sample_euler",
    "sample_heun",
    "sample_train_t",
    "sdedit_start",
    "shift_time",
]
