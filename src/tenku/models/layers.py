"""Shared transformer building blocks: norms, timestep embedding, modulation, 3D RoPE, attention.

Written after FLUX's ``layers.py``. Tokens are ``(B, L, D)``; attention heads ``(B, heads, L,
head_dim)``. Everything runs unchanged in fp32, under bf16/fp16 autocast and on any device:
the numerically touchy parts (norm statistics, sinusoids, rotations) are computed in fp32 and
cast back to the input's dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


class RMSNorm(nn.Module):
    """Root-mean-square norm over one axis with a learned scale, computed in float32.

    The last axis by default (QK-norm over head dims); ``axis=1`` normalises the channels of
    a video ``(B, C, T, H, W)`` at each position on its own (the VAE).
    """

    def __init__(self, dim: int, eps: float = 1e-6, axis: int = -1):
        super().__init__()
        self.eps = eps
        self.axis = axis
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        shape = [1] * x.ndim
        shape[self.axis] = -1  # the scale broadcasts along the normalised axis
        return rms_normalize(x, self.scale.view(shape), self.eps, self.axis)


def rms_normalize(x: Tensor, scale: Tensor, eps: float, axis: int = -1) -> Tensor:
    """``x / rms(x) * scale`` over ``axis``, computed in float32, returned in ``x``'s dtype."""
    x32 = x.float()
    rrms = torch.rsqrt(x32.square().mean(axis, keepdim=True) + eps)
    return (x32 * rrms * scale.float()).to(x.dtype)


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0, factor: float = 1000.0):
    """Sinusoidal embedding ``(B, dim)`` of flow times ``t`` ``(B,)`` in [0, 1] (fp32).

    ``t`` is scaled by ``factor`` first so that [0, 1] spans the usual range of periods.
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )
    args = factor * t.float()[:, None] * freqs[None]  # (B, half)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (B, dim)


class MLPEmbedder(nn.Module):
    """``in_dim -> hidden -> hidden`` with SiLU: embeds the time sinusoid and the pooled text."""

    def __init__(self, in_dim: int, hidden: int):
        super().__init__()
        self.in_layer = nn.Linear(in_dim, hidden)
        self.out_layer = nn.Linear(hidden, hidden)

    def forward(self, x: Tensor) -> Tensor:
        return self.out_layer(F.silu(self.in_layer(x)))


@dataclass
class ModulationOut:
    """One adaLN modulation, each part ``(B, 1, D)`` to broadcast over the tokens."""

    shift: Tensor
    scale: Tensor
    gate: Tensor

    def modulate(self, x: Tensor) -> Tensor:
        """``(B, L, D) -> (B, L, D)``: ``(1 + scale) * x + shift``."""
        return torch.addcmul(self.shift, x, 1 + self.scale)

    def gated(self, x: Tensor, y: Tensor) -> Tensor:
        """The gated residual ``x + gate * y`` of ``(B, L, D)`` tensors, in one pass."""
        return torch.addcmul(x, self.gate, y)


class Modulation(nn.Module):
    """``count`` (shift, scale, gate) triples from the conditioning vector (adaLN-zero)."""

    def __init__(self, dim: int, count: int):
        super().__init__()
        self.count = count
        self.lin = nn.Linear(dim, 3 * count * dim)

    def forward(self, vec: Tensor) -> list[ModulationOut]:
        parts = self.lin(F.silu(vec))[:, None, :].chunk(3 * self.count, dim=-1)  # (B, 1, D) each
        return [ModulationOut(*parts[3 * i : 3 * i + 3]) for i in range(self.count)]


@dataclass
class Rotary:
    """Rotary angles as cosines and sines, each ``(L, head_dim // 2)`` in fp32."""

    cos: Tensor
    sin: Tensor


def grid_positions(t: int, h: int, w: int, device: torch.device | None = None) -> Tensor:
    """``(t * h * w, 3)`` float (t, h, w) indices of a token grid, in ``(t h w)`` order."""
    axes = [torch.arange(n, dtype=torch.float32, device=device) for n in (t, h, w)]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)


def rope(positions: Tensor, axes: tuple[int, ...], theta: float = 10000.0) -> Rotary:
    """3D rotary embedding for ``positions`` ``(L, len(axes))``.

    Axis ``i`` owns ``axes[i]`` channels of each head (``sum(axes) == head_dim``, each even),
    rotated in interleaved pairs at frequencies ``theta ** (-2k / axes[i])``. The angles depend
    on positions only through differences in ``q · k``, so any grid size works.
    """
    angles = []
    for i, d in enumerate(axes):
        freqs = theta ** (
            -torch.arange(0, d, 2, dtype=torch.float32, device=positions.device) / d
        )  # (d // 2,)
        angles.append(positions[:, i].float()[:, None] * freqs[None])  # (L, d // 2)
    angle = torch.cat(angles, dim=-1)  # (L, head_dim // 2)
    return Rotary(angle.cos(), angle.sin())


def apply_rope(x: Tensor, rot: Rotary) -> Tensor:
    """Rotate ``x`` ``(..., L, head_dim)`` by ``rot``; returns the same shape and dtype."""
    x1, x2 = x.float().unflatten(-1, (-1, 2)).unbind(-1)  # (..., L, head_dim // 2) each
    out = torch.stack([x1 * rot.cos - x2 * rot.sin, x1 * rot.sin + x2 * rot.cos], dim=-1)
    return out.flatten(-2).to(x.dtype)  # (..., L, head_dim)


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
    """SDPA over ``(B, heads, L, head_dim)`` inputs -> ``(B, L, heads * head_dim)``.

    ``mask`` is boolean, broadcastable to ``(B, heads, L_q, L_k)``, True = attend.
    """
    x = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, heads, L, head_dim)
    return rearrange(x, "b h l d -> b l (h d)")


class SelfAttention(nn.Module):
    """Multi-head self-attention with QK-norm and rotary positions."""

    def __init__(self, dim: int, heads: int, qk_norm: bool = True):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = RMSNorm(dim // heads) if qk_norm else nn.Identity()
        self.k_norm = RMSNorm(dim // heads) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, rot: Rotary) -> Tensor:
        """``x`` ``(B, L, D)`` -> ``(B, L, D)``."""
        qkv = rearrange(self.qkv(x), "b l (k h d) -> k b h l d", k=3, h=self.heads)
        qk, v = qkv[:2], qkv[2]  # (2, B, heads, L, head_dim), (B, heads, L, head_dim)
        if isinstance(self.q_norm, RMSNorm) and isinstance(self.k_norm, RMSNorm):
            # both norms in one pass: (2, 1, 1, 1, head_dim) scales
            scale = torch.stack([self.q_norm.scale, self.k_norm.scale])[:, None, None, None]
            qk = rms_normalize(qk, scale, self.q_norm.eps)
        q, k = apply_rope(qk, rot).unbind(0)  # queries and keys rotated in one pass
        return self.proj(attention(q, k, v))


class CrossAttention(nn.Module):
    """Multi-head attention from the tokens to a context sequence (the text), with QK-norm."""

    def __init__(self, dim: int, heads: int, qk_norm: bool = True):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.q_norm = RMSNorm(dim // heads) if qk_norm else nn.Identity()
        self.k_norm = RMSNorm(dim // heads) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, context: Tensor, mask: Tensor) -> Tensor:
        """``x`` ``(B, L, D)``, ``context`` ``(B, S, D)``, ``mask`` ``(B, S)`` -> ``(B, L, D)``.

        ``mask`` is boolean, True = attend; each row needs at least one True (the DiT
        prepends an always-visible null token).
        """
        q = rearrange(self.q(x), "b l (h d) -> b h l d", h=self.heads)
        k, v = rearrange(self.kv(context), "b s (k h d) -> k b h s d", k=2, h=self.heads)
        q, k = self.q_norm(q), self.k_norm(k)
        return self.proj(attention(q, k, v, mask[:, None, None, :]))  # mask (B, 1, 1, S)


class MLP(nn.Module):
    """``dim -> hidden -> dim`` with tanh-GELU."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))
