"""The causal 3D video VAE: video ``(B, 3, 1 + 4k, H, W)`` <-> latent ``(B, Cz, 1 + k, H/8, W/8)``.

Every temporal convolution is causal: it pads only on the past side, replicating the first
frame, so a latent frame never depends on later frames. Temporal downsampling keeps the first
frame on its own (frame 0 -> latent 0, frames 1-4 -> latent 1, ...), so an image is a
one-frame video and encodes to the first latent frame of any video that starts with it. The
decoder mirrors this: latent frame 0 decodes to one frame, every later latent frame to four.

Normalisation is RMSNorm over channels (per position, never across frames), so decoding in
temporal chunks with an explicit :data:`CausalCache` gives the same frames as decoding at once.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from tenku.models.checkpoint import load_config, load_weights, save_pretrained
from tenku.models.layers import RMSNorm

CausalCache = dict[str, Tensor]
"""The last input frames of each causal conv (by module name), carried between chunks."""

LOGVAR_INIT = -8.0  # initial log-variance of the posterior
LOGVAR_RANGE = (-30.0, 20.0)  # the posterior's log-variance is clamped to this range


@dataclass(frozen=True)
class VAEConfig:
    """Shape of a :class:`VideoVAE`. The compression is 2**(levels - 1) in space."""

    in_channels: int = 3  # pixel channels (RGB)
    latent_channels: int = 8  # channels of the latent z
    base_channels: int = 32  # channels at full resolution; level i has base * channel_mults[i]
    channel_mults: tuple[int, ...] = (1, 2, 4, 4)  # one level each; 3 downsamplings -> 8x
    temporal_down: tuple[bool, ...] = (False, True, True)  # downsamplings that halve time -> 4x
    blocks_per_level: int = 1  # residual blocks per level, in encoder and decoder alike
    patch_size: int = 1  # pixels folded into channels (p x p) before the first conv
    spatial_down: tuple[bool, ...] | None = None  # downsamplings that halve space (None: all)
    shortcut: bool = False  # resampling adds a parameter-free space/time <-> channel shortcut
    scaling_factor: float = 1.0  # diffusion latents are (z - shift_factor) * scaling_factor
    shift_factor: float = 0.0  # see scaling_factor; measured on data after training

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel_mults", tuple(self.channel_mults))
        object.__setattr__(self, "temporal_down", tuple(bool(t) for t in self.temporal_down))
        if self.spatial_down is None:
            object.__setattr__(self, "spatial_down", (True,) * len(self.temporal_down))
        object.__setattr__(self, "spatial_down", tuple(bool(s) for s in self.spatial_down))
        if not self.channel_mults or min(self.channel_mults) < 1:
            raise ValueError(f"channel_mults: {self.channel_mults} must be positive integers")
        if len(self.temporal_down) != len(self.channel_mults) - 1:
            raise ValueError(
                f"temporal_down: needs one entry per downsampling "
                f"({len(self.channel_mults) - 1}), got {len(self.temporal_down)}"
            )
        if len(self.spatial_down) != len(self.temporal_down):
            raise ValueError(
                f"spatial_down: needs one entry per downsampling "
                f"({len(self.temporal_down)}), got {len(self.spatial_down)}"
            )
        if not all(s or t for s, t in zip(self.spatial_down, self.temporal_down, strict=True)):
            raise ValueError("spatial_down/temporal_down: every downsampling must halve something")
        for name in ("in_channels", "latent_channels", "base_channels", "patch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be positive, got {getattr(self, name)}")
        if self.blocks_per_level < 0:
            raise ValueError(f"blocks_per_level: must be >= 0, got {self.blocks_per_level}")

    @property
    def spatial_compression(self) -> int:
        return self.patch_size * 2 ** sum(self.spatial_down)  # type: ignore[arg-type]

    @property
    def temporal_compression(self) -> int:
        return 2 ** sum(self.temporal_down)

    @property
    def channels(self) -> tuple[int, ...]:
        """Channels of each level, from full resolution down."""
        return tuple(self.base_channels * m for m in self.channel_mults)


VAE_PRESETS: dict[str, VAEConfig] = {
    # tests: 0.17 M parameters, milliseconds per 16 x 16 clip
    "tiny": VAEConfig(base_channels=8, channel_mults=(1, 2, 2, 2)),
    # the sandbox world on a CPU: thin at full resolution, where most of the compute is, and
    # time halved early; encode + decode of a 33 x 128 x 128 clip takes about 0.6 s on 2 cores
    "world": VAEConfig(
        base_channels=8, channel_mults=(1, 2, 4, 8), temporal_down=(True, True, False)
    ),
    # the same with 16 latent channels (8 held reconstructions near 20 dB: 20.2 vs 19.7 dB,
    # 276 vs 1000 steps); experimental, not shipped
    "world-c16": VAEConfig(
        latent_channels=16,
        base_channels=8,
        channel_mults=(1, 2, 4, 8),
        temporal_down=(True, True, False),
    ),
    # `tenku train world --recipe world-m` (an H200's minutes): 7.3 M parameters, 16 latent
    # channels, two blocks per level; decodes a 33 x 128 x 128 clip in 1.2 s (fp32) or 0.6 s
    # (bf16) on 2 Zen 4 cores, against 0.38 / 0.24 s for `world`
    "world-m": VAEConfig(
        latent_channels=16,
        base_channels=16,
        channel_mults=(1, 2, 4, 8),
        temporal_down=(True, True, False),
        blocks_per_level=2,
    ),
}


# ----------------------------------------------------------------------------- building blocks


class CausalConv3d(nn.Conv3d):
    """A Conv3d that pads time on the past side only (first frame repeated, or the cache).

    Space is zero-padded by ``kernel // 2``. With a ``cache`` the conv reads the frames it
    needs from the previous chunk there and stores what the next chunk will need.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: tuple[int, int, int] = (3, 3, 3),
        stride: tuple[int, int, int] = (1, 1, 1),
    ):
        super().__init__(
            in_channels,
            out_channels,
            kernel,
            stride=stride,
            padding=(0, kernel[1] // 2, kernel[2] // 2),
        )
        self.cache_key = ""  # set to the module's name by VideoVAE

    def forward(self, x: Tensor, cache: CausalCache | None = None) -> Tensor:
        # x (B, C, T, H, W) -> (B, C', T', H', W')
        kt, st = self.kernel_size[0], self.stride[0]
        if kt > 1:
            past = cache.get(self.cache_key) if cache is not None else None
            if past is None:
                past = x[:, :, :1].expand(-1, -1, kt - 1, -1, -1)  # (B, C, kt - 1, H, W)
            past = past.contiguous(memory_format=_memory_format(x))  # so cat keeps the format
            x = torch.cat([past, x], dim=2)  # (B, C, kt - 1 + T, H, W)
            if cache is not None:  # frames from the first window the conv did not start
                used = (x.shape[2] - kt) // st + 1
                cache[self.cache_key] = x[:, :, used * st :].clone()
        return self._conv(x)

    def _conv(self, x: Tensor) -> Tensor:
        """The convolution, steered around two slow CPU paths of PyTorch.

        On CPU, ``F.conv3d`` in fp32 at batch 1 takes a naive loop instead of oneDNN whenever
        C * T * H < 20480 (6-8x slower); and where oneDNN has no bf16 convolution (CPUs
        without AVX512-BF16 or AMX), a bf16 conv3d is 100x slower than fp32. So CPU convs call
        oneDNN in fp32; bf16 (autocast or bf16 weights) is emulated: operands rounded to bf16,
        fp32 accumulation, output cast to bf16, as a native bf16 conv would do.
        """
        if x.device.type != "cpu" or not torch.backends.mkldnn.is_available():
            return super().forward(x)
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
        if dtype not in (torch.float32, torch.bfloat16) or (
            dtype == torch.bfloat16 and _native_bf16_conv()
        ):
            return super().forward(x)
        x, w, b = (t.to(dtype).float() for t in (x, self.weight, self.bias))
        out = torch.ops.aten.mkldnn_convolution(
            x, w, b, self.padding, self.stride, self.dilation, self.groups
        )
        return out.to(dtype)


def _memory_format(x: Tensor) -> torch.memory_format:
    """channels_last_3d if ``x`` is laid out so (and not also plainly contiguous)."""
    if x.is_contiguous(memory_format=torch.channels_last_3d) and not x.is_contiguous():
        return torch.channels_last_3d
    return torch.contiguous_format


@functools.cache
def _native_bf16_conv() -> bool:
    """Whether oneDNN has bf16 convolutions on this CPU (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return True


class ResBlock(nn.Module):
    """x + conv(silu(norm(conv(silu(norm(x)))))), channels kept."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm1 = RMSNorm(channels, axis=1)
        self.conv1 = CausalConv3d(channels, channels)
        self.norm2 = RMSNorm(channels, axis=1)
        self.conv2 = CausalConv3d(channels, channels)

    def forward(self, x: Tensor, cache: CausalCache | None = None) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)), cache)
        return x + self.conv2(F.silu(self.norm2(h)), cache)


def _match_channels(x: Tensor, channels: int) -> Tensor:
    """Repeat or average channel groups of ``x`` (B, C, ...) to ``channels`` (no parameters)."""
    c = x.shape[1]
    if c == channels:
        return x
    if channels % c == 0:
        return x.repeat_interleave(channels // c, dim=1)
    return x.unflatten(1, (channels, c // channels)).mean(dim=2)


def _check_shortcut(c_in: int, c_out: int) -> None:
    if c_in % c_out and c_out % c_in:
        raise ValueError(f"shortcut: channels {c_in} and {c_out} must divide one another")


class Downsample(CausalConv3d):
    """Strided causal conv: (B, C, T, H, W) -> (B, C', T', H', W').

    H' = H / 2 when ``spatial`` (else H), T' = 1 + (T - 1) / 2 when ``temporal`` (output frame
    i sees input frames 2i - 2 .. 2i). With ``shortcut`` the output adds the input folded into
    channels (frame 0 paired with itself, then frames 2i - 1 and 2i; each 2 x 2 pixel block)
    and averaged to C' channels, so the block starts close to a lossless rearrangement.
    """

    def __init__(
        self, in_channels: int, out_channels: int, temporal: bool, spatial: bool, shortcut: bool
    ):
        super().__init__(
            in_channels, out_channels, stride=(2 if temporal else 1, *(2 if spatial else 1,) * 2)
        )
        self.temporal, self.spatial, self.shortcut = temporal, spatial, shortcut
        if shortcut:
            _check_shortcut(
                in_channels * (2 if temporal else 1) * (4 if spatial else 1), out_channels
            )

    def forward(self, x: Tensor, cache: CausalCache | None = None) -> Tensor:
        first = cache is None or self.cache_key not in cache
        out = super().forward(x, cache)
        if not self.shortcut:
            return out
        r = 2 if self.temporal else 1
        if self.temporal and first:
            x = torch.cat([x[:, :, :1], x], dim=2)  # frame 0 is paired with itself
        s = 2 if self.spatial else 1
        folded = rearrange(x, "b c (t r) (h p) (w q) -> b (c r p q) t h w", r=r, p=s, q=s)
        return out + _match_channels(folded, out.shape[1]).to(out.dtype)


class Upsample(nn.Module):
    """Mirror of :class:`Downsample`: (B, C, T, H, W) -> (B, C', T', H', W').

    With ``temporal`` a causal conv makes two frames from each frame (time from channels) and
    the very first frame of the video keeps only one, so T' = 2T - 1; with ``spatial`` space
    is doubled by nearest + conv. ``shortcut`` adds the input's channels unfolded into the
    new frames and pixels (repeated or averaged to C').
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        temporal: bool,
        spatial: bool = True,
        shortcut: bool = False,
    ):
        super().__init__()
        self.time_conv = CausalConv3d(in_channels, 2 * in_channels, (3, 1, 1)) if temporal else None
        self.conv = CausalConv3d(in_channels, out_channels)
        self.spatial, self.shortcut = spatial, shortcut
        if shortcut:
            _check_shortcut(
                in_channels, out_channels * (2 if temporal else 1) * (4 if spatial else 1)
            )

    def forward(self, x: Tensor, cache: CausalCache | None = None) -> Tensor:
        first = self.time_conv is not None and (
            cache is None or self.time_conv.cache_key not in cache
        )
        skip = None
        if self.shortcut:
            r, s = (2 if self.time_conv is not None else 1), (2 if self.spatial else 1)
            skip = _match_channels(x, self.conv.out_channels * r * s * s)
            skip = rearrange(skip, "b (c r p q) t h w -> b c (t r) (h p) (w q)", r=r, p=s, q=s)
            if first:
                skip = skip[:, :, 1:]
        if self.time_conv is not None:
            x = self.time_conv(x, cache)  # (B, 2C, T, H, W)
            x = rearrange(x, "b (r c) t h w -> b c (t r) h w", r=2)  # (B, C, 2T, H, W)
            if first:
                x = x[:, :, 1:]  # frame 0 of the video decodes to one frame: (B, C, 2T - 1, H, W)
        if self.spatial:
            x = F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest")  # (B, C, T', 2H, 2W)
        out = self.conv(x, cache)
        return out if skip is None else out + skip.to(out.dtype)


class Level(nn.Module):
    """Residual blocks at one resolution, then an optional resampling."""

    def __init__(self, channels: int, blocks: int, resample: nn.Module | None):
        super().__init__()
        self.blocks = nn.ModuleList(ResBlock(channels) for _ in range(blocks))
        self.resample = resample

    def forward(self, x: Tensor, cache: CausalCache | None = None) -> Tensor:
        for block in self.blocks:
            x = block(x, cache)
        return x if self.resample is None else self.resample(x, cache)


class Encoder(nn.Module):
    """(B, 3, T, H, W) -> moments (B, 2 Cz, 1 + (T - 1) / ft, H / fs, W / fs)."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        ch, n = cfg.channels, len(cfg.channels)
        self.patch = cfg.patch_size
        self.conv_in = CausalConv3d(cfg.in_channels * self.patch**2, ch[0])
        self.levels = nn.ModuleList(
            Level(
                ch[i],
                cfg.blocks_per_level,
                Downsample(
                    ch[i], ch[i + 1], cfg.temporal_down[i], cfg.spatial_down[i], cfg.shortcut
                )
                if i < n - 1
                else None,
            )
            for i in range(n)
        )
        self.mid = ResBlock(ch[-1])
        self.norm_out = RMSNorm(ch[-1], axis=1)
        self.conv_out = CausalConv3d(ch[-1], 2 * cfg.latent_channels)

    def forward(self, x: Tensor, cache: CausalCache | None = None) -> Tensor:
        p = self.patch
        x = rearrange(x, "b c t (h p) (w q) -> b (c p q) t h w", p=p, q=p)  # (B, 3p², T, H/p, W/p)
        x = x.contiguous(memory_format=torch.channels_last_3d)  # faster convs, same values
        x = self.conv_in(x, cache)  # (B, C0, T, H/p, W/p)
        for level in self.levels:
            x = level(x, cache)  # ... -> (B, C_last, T / ft, H / fs, W / fs)
        x = self.mid(x, cache)
        x = self.conv_out(F.silu(self.norm_out(x)), cache)  # (B, 2 Cz, T', H', W')
        return x.contiguous()


class Decoder(nn.Module):
    """z (B, Cz, T', H', W') -> (B, 3, 1 + (T' - 1) ft, H' fs, W' fs)."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        ch, n = cfg.channels, len(cfg.channels)
        self.patch = cfg.patch_size
        self.conv_in = CausalConv3d(cfg.latent_channels, ch[-1])
        self.mid = ResBlock(ch[-1])
        self.levels = nn.ModuleList(  # from the coarsest level up
            Level(
                ch[i],
                cfg.blocks_per_level,
                Upsample(
                    ch[i],
                    ch[i - 1],
                    cfg.temporal_down[i - 1],
                    cfg.spatial_down[i - 1],
                    cfg.shortcut,
                )
                if i > 0
                else None,
            )
            for i in reversed(range(n))
        )
        self.norm_out = RMSNorm(ch[0], axis=1)
        self.conv_out = CausalConv3d(ch[0], cfg.in_channels * self.patch**2)

    def forward(self, z: Tensor, cache: CausalCache | None = None) -> Tensor:
        z = z.contiguous(memory_format=torch.channels_last_3d)  # faster convs, same values
        x = self.conv_in(z, cache)  # (B, C_last, T', H', W')
        x = self.mid(x, cache)
        for level in self.levels:
            x = level(x, cache)  # ... -> (B, C0, T, H, W)
        x = self.conv_out(F.silu(self.norm_out(x)), cache)  # (B, 3p², T, H/p, W/p)
        p = self.patch
        x = rearrange(x, "b (c p q) t h w -> b c t (h p) (w q)", p=p, q=p)  # (B, 3, T, H, W)
        return x.contiguous()


# ----------------------------------------------------------------------------- posterior


@dataclass(frozen=True)
class DiagonalGaussian:
    """The encoder's posterior q(z | x): a Gaussian per latent element, (B, Cz, T', H', W')."""

    mean: Tensor  # (B, Cz, T', H', W')
    logvar: Tensor  # (B, Cz, T', H', W'), clamped to LOGVAR_RANGE

    @classmethod
    def from_moments(cls, moments: Tensor) -> DiagonalGaussian:
        """Split the encoder's (B, 2 Cz, T', H', W') output into mean and clamped logvar."""
        mean, logvar = moments.chunk(2, dim=1)  # 2 x (B, Cz, T', H', W')
        return cls(mean, logvar.clamp(*LOGVAR_RANGE))

    @property
    def std(self) -> Tensor:
        return torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        """mean + std * noise, (B, Cz, T', H', W')."""
        noise = torch.randn(
            self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype
        )
        return self.mean + self.std * noise

    def mode(self) -> Tensor:
        return self.mean

    def kl(self) -> Tensor:
        """KL(q || N(0, I)) summed over each sample's latent elements, (B,) in float32."""
        mean, logvar = self.mean.float(), self.logvar.float()
        return 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).sum(dim=(1, 2, 3, 4))


# ----------------------------------------------------------------------------- the model


class VideoVAE(nn.Module):
    """Causal 3D VAE; video (B, 3, 1 + 4k, H, W) in [-1, 1] <-> z (B, Cz, 1 + k, H/8, W/8).

    (The factors 4 and 8 are those of every preset; a config may choose others.)
    """

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        for name, module in self.named_modules():
            if isinstance(module, CausalConv3d):
                module.cache_key = name
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Convs: normal weights with std 1/sqrt(fan_in) (activations keep their scale) and
        uniform biases in +-1/sqrt(fan_in) (a flat grey input, 0 in [-1, 1], must not reach
        an RMSNorm as a zero vector, whose gradient is 1/sqrt(eps)). Residual branches start
        at zero (each block is the identity); temporal upsampling starts as frame repetition."""
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                bound = module.weight[0].numel() ** -0.5  # 1 / sqrt(fan_in)
                nn.init.normal_(module.weight, std=bound)
                nn.init.uniform_(module.bias, -bound, bound)
            elif isinstance(module, RMSNorm):
                nn.init.ones_(module.scale)
        for module in self.modules():
            if isinstance(module, ResBlock):
                nn.init.zeros_(module.conv2.weight)
                nn.init.zeros_(module.conv2.bias)
            elif isinstance(module, Upsample) and module.time_conv is not None:
                c = module.time_conv.in_channels
                weight = torch.zeros_like(module.time_conv.weight)  # (2C, C, 3, 1, 1)
                eye = torch.eye(c)
                weight[:c, :, -1, 0, 0] = eye  # both output frames copy the current frame
                weight[c:, :, -1, 0, 0] = eye
                with torch.no_grad():
                    module.time_conv.weight.copy_(weight)
                    module.time_conv.bias.zero_()
        # The posterior starts nearly deterministic (std e^(LOGVAR_INIT / 2)): started at std 1,
        # unit noise on unit-scale latents would hide z from the decoder early in training.
        cz = self.config.latent_channels
        with torch.no_grad():
            self.encoder.conv_out.weight[cz:].mul_(0.01)
            self.encoder.conv_out.bias[cz:].fill_(LOGVAR_INIT)

    # ------------------------------------------------------------------ shapes

    @staticmethod
    def latent_frames(frames: int, temporal: int = 4) -> int:
        """Latent frames of a ``frames``-frame video: 1 + 4k -> 1 + k."""
        if frames < 1 or (frames - 1) % temporal:
            raise ValueError(f"T (frames): must be 1 + {temporal}k, got {frames}")
        return 1 + (frames - 1) // temporal

    @staticmethod
    def video_frames(latent_frames: int, temporal: int = 4) -> int:
        """Video frames decoded from ``latent_frames`` latent frames: 1 + k -> 1 + 4k."""
        if latent_frames < 1:
            raise ValueError(f"latent frames: must be >= 1, got {latent_frames}")
        return 1 + (latent_frames - 1) * temporal

    @staticmethod
    def latent_shape(
        frames: int, height: int, width: int, channels: int, *, temporal: int = 4, spatial: int = 8
    ) -> tuple[int, int, int, int]:
        """(Cz, T', H', W') of the latent of a (3, frames, height, width) video."""
        for name, size in (("H (height)", height), ("W (width)", width)):
            if size < spatial or size % spatial:
                raise ValueError(f"{name}: must be a positive multiple of {spatial}, got {size}")
        t = VideoVAE.latent_frames(frames, temporal)
        return (channels, t, height // spatial, width // spatial)

    def check_video(self, video: Tensor) -> None:
        """Raise a ValueError naming T, H or W unless ``video`` is (B, C, 1 + 4k, 8m, 8n)."""
        cfg = self.config
        if video.ndim != 5 or video.shape[1] != cfg.in_channels:
            raise ValueError(
                f"video: expected (B, {cfg.in_channels}, T, H, W), got {tuple(video.shape)}"
            )
        _, _, t, h, w = video.shape
        ft, fs = cfg.temporal_compression, cfg.spatial_compression
        self.latent_shape(t, h, w, cfg.latent_channels, temporal=ft, spatial=fs)

    def check_latents(self, z: Tensor) -> None:
        if z.ndim != 5 or z.shape[1] != self.config.latent_channels:
            raise ValueError(
                f"z: expected (B, {self.config.latent_channels}, T', H', W'), got {tuple(z.shape)}"
            )

    # ------------------------------------------------------------------ encode / decode

    def encode(self, video: Tensor, *, chunk_frames: int | None = None) -> DiagonalGaussian:
        """video (B, 3, 1 + 4k, H, W) in [-1, 1] -> posterior over z (B, Cz, 1 + k, H/8, W/8).

        ``chunk_frames`` (a multiple of 4) encodes frame 0 plus that many frames at a time,
        then that many more, with a causal cache: same result, less memory.
        """
        self.check_video(video)
        if chunk_frames is None:
            return DiagonalGaussian.from_moments(self.encoder(video))
        ft = self.config.temporal_compression
        if chunk_frames < ft or chunk_frames % ft:
            raise ValueError(
                f"chunk_frames: must be a positive multiple of {ft}, got {chunk_frames}"
            )
        cache: CausalCache = {}
        starts = range(0, max(video.shape[2] - 1, 1), chunk_frames)  # frame 0 rides with the first
        parts = [
            self.encoder(video[:, :, s + (s > 0) : s + 1 + chunk_frames], cache) for s in starts
        ]
        return DiagonalGaussian.from_moments(torch.cat(parts, dim=2))

    def decode(self, z: Tensor, *, chunk_frames: int | None = None) -> Tensor:
        """z (B, Cz, 1 + k, H', W') -> video (B, 3, 1 + 4k, 8H', 8W'), about [-1, 1].

        ``chunk_frames`` decodes that many latent frames at a time with a causal cache
        (see :meth:`decode_chunk`): the same frames as one call, with less memory.
        """
        self.check_latents(z)
        if chunk_frames is None:
            return self.decoder(z)
        if chunk_frames < 1:
            raise ValueError(f"chunk_frames: must be >= 1, got {chunk_frames}")
        cache: CausalCache = {}
        parts = []
        for s in range(0, z.shape[2], chunk_frames):
            frames, cache = self.decode_chunk(z[:, :, s : s + chunk_frames], cache)
            parts.append(frames)
        return torch.cat(parts, dim=2)

    def decode_chunk(
        self, z: Tensor, cache: CausalCache | None = None
    ) -> tuple[Tensor, CausalCache]:
        """Decode the next latent frames of a stream: z (B, Cz, n, H', W') -> frames, cache.

        Start with ``cache=None`` (or ``{}``): the first chunk gives 1 + 4(n - 1) frames, each
        later one 4n frames. Pass the returned cache (updated in place) to the next call.
        """
        self.check_latents(z)
        cache = {} if cache is None else cache
        return self.decoder(z, cache), cache

    def forward(
        self, video: Tensor, sample: bool = True, generator: torch.Generator | None = None
    ) -> tuple[Tensor, DiagonalGaussian]:
        """Reconstruct ``video`` (B, 3, T, H, W): (recon (B, 3, T, H, W), posterior)."""
        posterior = self.encode(video)
        z = posterior.sample(generator) if sample else posterior.mode()
        return self.decode(z), posterior

    # ------------------------------------------------------------------ diffusion latents

    def scale_latents(self, z: Tensor) -> Tensor:
        """VAE latents -> the diffusion model's: (z - shift_factor) * scaling_factor."""
        return (z - self.config.shift_factor) * self.config.scaling_factor

    def unscale_latents(self, latents: Tensor) -> Tensor:
        """Inverse of :meth:`scale_latents`, before :meth:`decode`."""
        return latents / self.config.scaling_factor + self.config.shift_factor

    # ------------------------------------------------------------------ checkpoints

    def save_pretrained(self, directory: str | Path, *, meta: dict[str, Any] | None = None) -> Path:
        """Write config.json + model.safetensors (fp16) to ``directory``."""
        return save_pretrained(self, self.config, directory, meta=meta)

    @classmethod
    def from_pretrained(
        cls,
        directory: str | Path,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> VideoVAE:
        """Rebuild the model from ``directory`` (config.json + model.safetensors), in eval mode."""
        model = cls(load_config(directory, VAEConfig)).to(dtype=dtype)
        load_weights(model, directory)
        return model.to(device=device).eval()


# ----------------------------------------------------------------------------- loss


def vae_loss(
    recon: Tensor,
    target: Tensor,
    posterior: DiagonalGaussian,
    *,
    kl_weight: float = 1e-6,
    l1_weight: float = 0.1,
    mse_weight: float = 1.0,
    diff_weight: float = 1.0,
    colour_weight: float = 0.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Weighted L1 + MSE + frame difference + KL, for (B, 3, T, H, W) videos in [-1, 1].

    The pixel terms are means over elements. The frame-difference term is the mean square of
    (recon[:, :, 1:] - recon[:, :, :-1]) - (the same of ``target``), zero for images, so that
    motion is kept. KL is the mean over latent elements, like the pixel terms: summed over
    each sample's latent (as in Stable Diffusion's VAE, whose pixel terms are sums too) it
    outweighed the mean pixel error by the latent size, and training settled on a posterior
    with std 0.4-3 around latents of size 1 and a blurred decoder (about 19-20 dB).

    On the sandbox world (small objects on flat backgrounds) an L1 weight of 1, on pixels or
    on frame differences, holds training at the median answer: background only, no motion
    (measured: still there after 450 steps, where these defaults reach 29.8 dB). Hence the
    light L1 and the squared difference term.

    ``colour_weight`` weighs the pixel terms of saturated pixels up, by 1 + colour_weight
    where the target's chroma (max - min of RGB, on [0, 1]) is 0.5 or more, ramping from 1 at
    chroma 0.2 (see :func:`colour_weights`). In the sandbox world only objects are saturated,
    and they cover about 5% of the pixels: under a plain mean the model fits the backgrounds
    first and leaves objects grey for hundreds of steps (overfitting 8 crops with a 2D conv
    AE, 300 steps: objects 16 dB plain, 32 dB with colour_weight 19).

    Returns (loss, parts) with detached, unweighted parts "l1", "mse" (plain means, whatever
    ``colour_weight``), "diff" and "kl".
    """
    if recon.shape != target.shape:
        raise ValueError(f"recon {tuple(recon.shape)} and target {tuple(target.shape)} differ")
    err = recon.float() - target.float()  # (B, 3, T, H, W)
    w = colour_weights(target, colour_weight) if colour_weight else None  # (B, 1, T, H, W)
    sq = err.square()
    l1, mse = _weighted_mean(err.abs(), w), _weighted_mean(sq, w)
    if err.shape[2] > 1:
        d = (err[:, :, 1:] - err[:, :, :-1]).square()  # == (d recon - d target)^2
        diff = _weighted_mean(d, None if w is None else torch.maximum(w[:, :, 1:], w[:, :, :-1]))
    else:
        diff = err.new_zeros(())
    kl = posterior.kl().mean() / posterior.mean[0].numel()  # per latent element
    loss = l1_weight * l1 + mse_weight * mse + diff_weight * diff + kl_weight * kl
    parts = {"l1": err.abs().mean(), "mse": sq.mean(), "diff": diff, "kl": kl}
    return loss, {k: v.detach() for k, v in parts.items()}


def colour_weights(target: Tensor, colour_weight: float) -> Tensor:
    """Per-pixel loss weights (B, 1, T, H, W): 1 + colour_weight * ramp(chroma of ``target``).

    ``target`` is (B, 3, T, H, W) in [-1, 1]; chroma is max - min over RGB on [0, 1], and the
    ramp goes from 0 at chroma 0.2 (the darkest world background has 0.1) to 1 at 0.5.
    """
    t = target.detach().float()
    chroma = (t.amax(dim=1, keepdim=True) - t.amin(dim=1, keepdim=True)) / 2  # (B, 1, T, H, W)
    return 1.0 + colour_weight * ((chroma - 0.2) / 0.3).clamp(0.0, 1.0)


def _weighted_mean(x: Tensor, w: Tensor | None) -> Tensor:
    """Mean of ``x`` (B, C, ...), weighted by ``w`` (B, 1, ...) with weights normalised to mean 1,
    so the terms keep the scale of a plain mean (and the parts stay comparable)."""
    if w is None:
        return x.mean()
    return (x * w).mean() / w.mean()


# ----------------------------------------------------------------------------- pixels


def to_model_input(frames: np.ndarray | Tensor) -> Tensor:
    """uint8 frames (B, T, H, W, 3), numpy or torch -> float32 video (B, 3, T, H, W) in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
    if x.dtype != torch.uint8 or x.ndim != 5 or x.shape[-1] != 3:
        raise ValueError(f"frames: expected uint8 (B, T, H, W, 3), got {x.dtype} {tuple(x.shape)}")
    x = rearrange(x, "b t h w c -> b c t h w")  # (B, 3, T, H, W)
    return x.float().div(127.5).sub(1.0).contiguous()


def to_uint8(video: Tensor) -> np.ndarray:
    """float video (B, 3, T, H, W), about [-1, 1] -> uint8 numpy frames (B, T, H, W, 3)."""
    if video.ndim != 5:
        raise ValueError(f"video: expected (B, 3, T, H, W), got {tuple(video.shape)}")
    x = rearrange(video.detach().float(), "b c t h w -> b t h w c")  # (B, T, H, W, 3)
    return ((x.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8).cpu().numpy()
