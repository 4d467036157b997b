"""The diffusion transformer over spacetime patches: predicts the flow velocity of a video latent.

Layout (FLUX ``model.py`` + DiT/PixArt blocks): the noisy latent, the clean context latent and
the context mask are stacked on channels and cut into ``(t, h, w)`` patches (one linear layer);
every block is adaLN-zero self-attention with 3D RoPE and QK-norm, cross-attention to the text
tokens and a modulated MLP; the final layer is adaLN + linear, zero-initialised, so an untrained
model predicts exactly zero. Positions come from the actual token grid, so any latent size and
length works.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from tenku.models import checkpoint
from tenku.models.layers import (
    MLP,
    CrossAttention,
    MLPEmbedder,
    Modulation,
    Rotary,
    SelfAttention,
    grid_positions,
    rope,
    timestep_embedding,
)

TIME_FREQ_DIM = 256  # width of the sinusoidal timestep embedding


@dataclass(frozen=True)
class DiTConfig:
    latent_channels: int = 8  # channels C of the VAE latent (input and output)
    patch_size: tuple[int, int, int] = (1, 2, 2)  # (t, h, w) latent cells per token
    dim: int = 384  # width D of the token stream
    depth: int = 8  # number of transformer blocks
    heads: int = 6  # attention heads (head_dim = dim // heads)
    mlp_ratio: float = 4.0  # MLP hidden width as a multiple of dim
    text_dim: int = 384  # text encoder width (all-MiniLM-L6-v2)
    rope_theta: float = 10000.0  # RoPE base period
    rope_axes: tuple[int, int, int] = (16, 24, 24)  # head_dim split between t, h, w (even parts)
    qk_norm: bool = True  # RMSNorm on queries and keys in every attention

    def __post_init__(self):
        if self.dim % self.heads:
            raise ValueError(f"DiTConfig: dim {self.dim} is not divisible by heads {self.heads}")
        if sum(self.rope_axes) != self.dim // self.heads or any(a % 2 for a in self.rope_axes):
            raise ValueError(
                f"DiTConfig: rope_axes {self.rope_axes} must be even and sum to head_dim "
                f"{self.dim // self.heads} (dim {self.dim} // heads {self.heads})"
            )
        if len(self.patch_size) != 3 or min(self.patch_size) < 1:
            raise ValueError(f"DiTConfig: patch_size {self.patch_size} must be 3 positive ints")


DIT_PRESETS: dict[str, DiTConfig] = {
    "tiny": DiTConfig(dim=32, depth=2, heads=2, rope_axes=(4, 6, 6)),  # tests
    "world-xs": DiTConfig(dim=192, depth=6, heads=3),  # ~5.3M: the shipped default (CPU-trained)
    "world-s": DiTConfig(dim=256, depth=8, heads=4),  # ~12M parameters
    "world-m": DiTConfig(dim=384, depth=8, heads=6),  # ~27M parameters
}


def patchify(video: Tensor, patch: tuple[int, int, int]) -> Tensor:
    """``(B, C, T, H, W)`` -> tokens ``(B, L, pt * ph * pw * C)``, ``L = T/pt * H/ph * W/pw``."""
    pt, ph, pw = patch
    return rearrange(
        video, "b c (t pt) (h ph) (w pw) -> b (t h w) (pt ph pw c)", pt=pt, ph=ph, pw=pw
    )


def unpatchify(tokens: Tensor, grid: tuple[int, int, int], patch: tuple[int, int, int]) -> Tensor:
    """Inverse of :func:`patchify`: tokens ``(B, L, pt * ph * pw * C)`` -> ``(B, C, T, H, W)``.

    ``grid`` is the ``(t, h, w)`` token grid (``L = t * h * w``, ``T = t * pt`` and so on).
    """
    (t, h, w), (pt, ph, pw) = grid, patch
    pattern = "b (t h w) (pt ph pw c) -> b c (t pt) (h ph) (w pw)"
    return rearrange(tokens, pattern, t=t, h=h, w=w, pt=pt, ph=ph, pw=pw)


class DiTBlock(nn.Module):
    """adaLN-zero self-attention (RoPE) -> cross-attention to the text -> adaLN-zero MLP."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        dim, heads = config.dim, config.heads
        self.modulation = Modulation(dim, 2)  # (attention, MLP)
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(dim, heads, config.qk_norm)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.cross = CrossAttention(dim, heads, config.qk_norm)
        self.norm3 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = MLP(dim, int(dim * config.mlp_ratio))

    def forward(self, x: Tensor, vec: Tensor, rot: Rotary, text: Tensor, text_mask: Tensor):
        """Tokens ``(B, L, D)`` -> ``(B, L, D)``.

        ``vec`` ``(B, D)`` conditioning, ``text`` ``(B, S, D)``, ``text_mask`` ``(B, S)`` bool.
        """
        attn, mlp = self.modulation(vec)
        x = attn.gated(x, self.attn(attn.modulate(self.norm1(x)), rot))
        x = x + self.cross(self.norm2(x), text, text_mask)
        return mlp.gated(x, self.mlp(mlp.modulate(self.norm3(x))))


class FinalLayer(nn.Module):
    """adaLN (shift, scale) + linear from ``D`` to one patch of velocity per token."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.modulation = nn.Linear(dim, 2 * dim)
        self.linear = nn.Linear(dim, out_dim)

    def forward(self, x: Tensor, vec: Tensor) -> Tensor:
        """``x`` ``(B, L, D)``, ``vec`` ``(B, D)`` -> ``(B, L, out_dim)``."""
        shift, scale = self.modulation(F.silu(vec))[:, None, :].chunk(2, dim=-1)  # (B, 1, D)
        return self.linear((1 + scale) * self.norm(x) + shift)


class DiT(nn.Module):
    """Velocity model ``v(x_t, t | text, context)`` over video latents ``(B, C, T, H, W)``."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.config = config
        c, dim = config.latent_channels, config.dim
        patch_volume = config.patch_size[0] * config.patch_size[1] * config.patch_size[2]
        self.patch_in = nn.Linear(patch_volume * (2 * c + 1), dim)  # noisy + context + mask
        self.time_in = MLPEmbedder(TIME_FREQ_DIM, dim)
        self.pooled_in = MLPEmbedder(config.text_dim, dim)
        self.text_in = nn.Linear(config.text_dim, dim)
        self.null_text = nn.Parameter(torch.zeros(1, 1, dim))  # always-visible text key
        self.blocks = nn.ModuleList(DiTBlock(config) for _ in range(config.depth))
        self.final = FinalLayer(dim, patch_volume * c)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT's scheme: xavier linears, N(0, 0.02) embedders, zero adaLN and zero output.

        Every block starts as the identity (zero gates, zero cross-attention output) and the
        final layer outputs zero, so the untrained model predicts velocity 0.
        """
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        for embedder in (self.time_in, self.pooled_in):
            nn.init.normal_(embedder.in_layer.weight, std=0.02)
            nn.init.normal_(embedder.out_layer.weight, std=0.02)
        nn.init.normal_(self.null_text, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.modulation.lin.weight)
            nn.init.zeros_(block.modulation.lin.bias)
            nn.init.zeros_(block.cross.proj.weight)
        for layer in (self.final.modulation, self.final.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def num_params(self) -> int:
        """Number of parameters."""
        return sum(p.numel() for p in self.parameters())

    def token_grid(self, x: Tensor) -> tuple[int, int, int]:
        """``(t, h, w)`` tokens for a latent ``x`` ``(B, C, T, H, W)``; a clear error otherwise."""
        if x.ndim != 5 or x.shape[1] != self.config.latent_channels:
            raise ValueError(
                f"DiT: x must be (B, {self.config.latent_channels}, T, H, W), got {tuple(x.shape)}"
            )
        size = dict(zip("THW", x.shape[2:], strict=True))
        bad = [
            f"{k}={n} (patch {p})"
            for (k, n), p in zip(size.items(), self.config.patch_size, strict=True)
            if n % p
        ]
        if bad:
            raise ValueError(f"DiT: latent {', '.join(bad)} not a multiple of the patch size")
        pt, ph, pw = self.config.patch_size
        return size["T"] // pt, size["H"] // ph, size["W"] // pw

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        text: Tensor,
        text_mask: Tensor | None = None,
        pooled: Tensor | None = None,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
    ) -> Tensor:
        """Velocity ``(B, C, T, H, W)`` (in ``x``'s dtype) for a noisy latent at flow times ``t``.

        Args:
            x: noisy latent ``(B, C, T, H, W)``; T, H, W multiples of the patch size.
            t: flow time ``(B,)`` in [0, 1] (a 0-dim tensor is broadcast).
            text: per-token text states ``(B, S, text_dim)``.
            text_mask: ``(B, S)`` bool, True = real token (None = all real; all False is fine).
            pooled: optional sentence vector ``(B, text_dim)``, added to the time embedding.
            context: clean latents ``(B, C, T, H, W)`` where given (multiplied by the mask here).
            context_mask: ``(B, 1, T, H, W)`` float, 1 = given, 0 = to generate.
                ``context`` and ``context_mask`` come together; both None = nothing given.
        """
        b, dtype = x.shape[0], x.dtype
        grid = self.token_grid(x)
        if (context is None) != (context_mask is None):
            raise ValueError("DiT: pass context and context_mask together (or neither)")
        if context is None or context_mask is None:
            # nothing given: the context and mask inputs are zero, so only x's columns count
            w = self.patch_in.weight.unflatten(1, (-1, 2 * self.config.latent_channels + 1))
            w = w[:, :, : self.config.latent_channels].flatten(1)  # (D, patch_volume * C)
            tokens = F.linear(patchify(x, self.config.patch_size), w, self.patch_in.bias)
        else:
            context_mask = context_mask.to(dtype)
            h = torch.cat([x, context.to(dtype) * context_mask, context_mask], dim=1)  # 2C + 1
            tokens = self.patch_in(patchify(h, self.config.patch_size))  # (B, L, D)
        positions = grid_positions(*grid, device=x.device)  # (L, 3)
        rot = rope(positions, self.config.rope_axes, self.config.rope_theta)

        t = t.expand(b) if t.ndim == 0 else t
        vec = self.time_in(timestep_embedding(t, TIME_FREQ_DIM).to(dtype))  # (B, D)
        if pooled is not None:
            vec = vec + self.pooled_in(pooled.to(dtype))

        txt = self.text_in(text.to(dtype))  # (B, S, D)
        txt = torch.cat([self.null_text.to(txt.dtype).expand(b, -1, -1), txt], dim=1)  # (B, 1+S, D)
        if text_mask is None:
            text_mask = torch.ones(text.shape[:2], dtype=torch.bool, device=x.device)
        txt_mask = F.pad(text_mask.bool(), (1, 0), value=True)  # (B, 1+S), the null token is on

        for block in self.blocks:
            tokens = block(tokens, vec, rot, txt, txt_mask)
        out = self.final(tokens, vec)  # (B, L, pt*ph*pw*C)
        return unpatchify(out, grid, self.config.patch_size).to(dtype)  # (B, C, T, H, W)

    def save_pretrained(self, directory: str | Path, meta: dict[str, Any] | None = None) -> Path:
        """Write ``config.json`` + fp16 ``model.safetensors`` into ``directory``."""
        return checkpoint.save_pretrained(self, self.config, directory, meta=meta)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> DiT:
        """Rebuild the model from ``config.json`` and load its weights (fp32 in memory)."""
        model = cls(checkpoint.load_config(directory, DiTConfig))
        return checkpoint.load_weights(model, directory)
