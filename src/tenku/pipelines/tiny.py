"""Tiny random models, built offline from configs, for tests and benchmarks: the native one
(:func:`save_tiny_native`) and diffusers pipelines (:func:`save_tiny`).

Each builder writes a folder in the layout ``save_pretrained`` gives a real model
(``model_index.json`` + ``transformer/``, ``vae/``, ``text_encoder/``, ``tokenizer/``,
``scheduler/``), so :func:`tenku.pipelines.backend.load_backend` loads it exactly as it would
load Wan2.1-T2V-1.3B-Diffusers, LTX-Video or CogVideoX-2b. The components keep the real
models' compression (Wan and CogVideoX: 8x space, 4x time; LTX: 32x space, 8x time) and shrink
everything else to a layer or two, so a 64x64 clip of 9 frames runs on a CPU in well under a
second per step. The text encoder is a 2-layer T5 (``T5EncoderModel(T5Config(...))``) and the
tokenizer a word-level ``tokenizers`` model built in code: nothing is fetched from a hub.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

TEXT_DIM = 32  # the tiny T5's width: every tiny transformer's text/caption input
WORDS = (  # the tiny tokenizer's vocabulary; any other word is <unk>
    *("a", "an", "the", "red", "green", "blue", "white", "black", "yellow", "ball", "square"),
    *("triangle", "circle", "cube", "moves", "bounces", "rolls", "falls", "spins", "left"),
    *("right", "up", "down", "on", "in", "over", "from", "to", "and", "of", "with"),
    *("background", "slowly", "quickly", "big", "small", "two", "three", "cat", "dog", "car"),
)


def tiny_tokenizer(max_length: int = 32) -> Any:
    """A word-level ``PreTrainedTokenizerFast`` (lower-cased, split on whitespace/punctuation)."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2} | {w: i + 3 for i, w in enumerate(WORDS)}
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=max_length,
    )


def tiny_text_encoder(vocab_size: int, *, umt5: bool = False, width: int = TEXT_DIM) -> Any:
    """A 2-layer T5 encoder (UMT5 for Wan) of ``width`` with random weights: ``encoder(ids)``
    maps token ids ``(B, L)`` to states ``(B, L, width)``."""
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    config_cls, model_cls = (UMT5Config, UMT5EncoderModel) if umt5 else (T5Config, T5EncoderModel)
    config = config_cls(
        vocab_size=vocab_size,
        d_model=width,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return model_cls(config).eval()


def _text(*, umt5: bool = False) -> dict[str, Any]:
    tokenizer = tiny_tokenizer()
    return {"tokenizer": tokenizer, "text_encoder": tiny_text_encoder(len(tokenizer), umt5=umt5)}


def build_wan(image_to_video: bool = False) -> Any:
    """``WanPipeline`` (or ``WanImageToVideoPipeline``, Wan 2.2 style: no CLIP image encoder)."""
    from diffusers import (
        AutoencoderKLWan,
        FlowMatchEulerDiscreteScheduler,
        WanImageToVideoPipeline,
        WanPipeline,
        WanTransformer3DModel,
    )

    vae = AutoencoderKLWan(
        base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
        temperal_downsample=[False, True, True],
    )  # fmt: skip
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=36 if image_to_video else 16,  # I2V: noise + 4 mask + 16 image latents
        out_channels=16,
        text_dim=TEXT_DIM,
        freq_dim=32,
        ffn_dim=32,
        num_layers=2,
        rope_max_seq_len=32,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    parts = {"transformer": transformer, "vae": vae, "scheduler": scheduler, **_text(umt5=True)}
    if image_to_video:
        return WanImageToVideoPipeline(**parts, image_encoder=None, image_processor=None)
    return WanPipeline(**parts)


def build_ltx() -> Any:
    """``LTXPipeline`` with the real 32x spatial / 8x temporal VAE compression."""
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXPipeline,
        LTXVideoTransformer3DModel,
    )

    vae = AutoencoderKLLTXVideo(
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, True, False),
        decoder_spatio_temporal_scaling=(True, True, True, False),
        decoder_inject_noise=(False, False, False, False, False),
        timestep_conditioning=True,  # as LTX-Video 0.9.1 and later
        patch_size=4,
        patch_size_t=1,
    )
    transformer = LTXVideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        num_attention_heads=2,
        attention_head_dim=8,
        cross_attention_dim=16,
        num_layers=2,
        caption_channels=TEXT_DIM,
    )
    scheduler = FlowMatchEulerDiscreteScheduler()
    return LTXPipeline(transformer=transformer, vae=vae, scheduler=scheduler, **_text())


def build_cogvideox(image_to_video: bool = False) -> Any:
    """``CogVideoXPipeline`` (or ``CogVideoXImageToVideoPipeline``), CogVideoX 1.0 style."""
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXDDIMScheduler,
        CogVideoXImageToVideoPipeline,
        CogVideoXPipeline,
        CogVideoXTransformer3DModel,
    )

    vae = AutoencoderKLCogVideoX(
        block_out_channels=(8, 8, 8, 8),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=4,
    )
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=8 if image_to_video else 4,  # I2V: noise + image latents
        out_channels=4,
        time_embed_dim=4,
        text_embed_dim=TEXT_DIM,
        num_layers=1,
        sample_width=8,
        sample_height=8,
        sample_frames=49,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=16,
    )
    scheduler = CogVideoXDDIMScheduler()
    cls = CogVideoXImageToVideoPipeline if image_to_video else CogVideoXPipeline
    return cls(transformer=transformer, vae=vae, scheduler=scheduler, **_text())


BUILDERS: dict[str, Callable[[], Any]] = {
    "wan": build_wan,
    "wan-i2v": lambda: build_wan(image_to_video=True),
    "ltx": build_ltx,
    "cogvideox": build_cogvideox,
    "cogvideox-i2v": lambda: build_cogvideox(image_to_video=True),
}


def save_tiny(kind: str, out: str | Path, *, seed: int = 0) -> Path:
    """Build the tiny pipeline ``kind`` (a key of :data:`BUILDERS`) and ``save_pretrained`` it."""
    if kind not in BUILDERS:
        raise ValueError(f"kind: {kind!r} is not one of {sorted(BUILDERS)}")
    torch.manual_seed(seed)
    pipe = BUILDERS[kind]()
    out = Path(out)
    pipe.save_pretrained(out)
    return out


def save_tiny_native(out: str | Path, *, seed: int = 0) -> Path:
    """A native model folder (as ``tenku export`` writes it) with the ``tiny`` presets' shapes.

    The transformer's weights are drawn from N(0, 0.05) instead of its zero-output init, so
    its outputs depend on every input (prompt, context, seed).
    """
    from tenku.models.dit import DIT_PRESETS, DiT
    from tenku.models.vae import VAE_PRESETS, VideoVAE
    from tenku.pipelines.pipeline import export_model

    out = Path(out)
    torch.manual_seed(seed)
    dit = DiT(DIT_PRESETS["tiny"])
    for p in dit.parameters():
        torch.nn.init.normal_(p, std=0.05)
    dit.save_pretrained(out / "parts" / "dit")
    VideoVAE(VAE_PRESETS["tiny"]).save_pretrained(out / "parts" / "vae")
    return export_model(out / "parts" / "vae", out / "parts" / "dit", out, name="tiny-random")
