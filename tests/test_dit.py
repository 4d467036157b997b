"""The diffusion transformer: shapes, zero init, conditioning, masks, RoPE, bf16, checkpoints."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from tenku.models.checkpoint import load_config
from tenku.models.dit import DIT_PRESETS, DiT, DiTConfig, patchify, unpatchify
from tenku.models.layers import apply_rope, grid_positions, rope

TINY = DIT_PRESETS["tiny"]


def inputs(shape=(2, 8, 3, 8, 8), text_len=6, seed=1) -> dict[str, torch.Tensor]:
    """Random keyword arguments for ``DiT.forward``: first latent frame given, 2 padded tokens."""
    g = torch.Generator().manual_seed(seed)
    b, _, t, h, w = shape
    context_mask = torch.zeros(b, 1, t, h, w)
    context_mask[:, :, 0] = 1
    text_mask = torch.ones(b, text_len, dtype=torch.bool)
    text_mask[:, -2:] = False
    return {
        "x": torch.randn(shape, generator=g),
        "t": torch.rand(b, generator=g),
        "text": torch.randn(b, text_len, TINY.text_dim, generator=g),
        "text_mask": text_mask,
        "pooled": torch.randn(b, TINY.text_dim, generator=g),
        "context": torch.randn(shape, generator=g) * context_mask,
        "context_mask": context_mask,
    }


def perturbed(model: DiT, std: float = 0.1, seed: int = 2) -> DiT:
    """``model`` with seeded noise added to every parameter, so no output is trivially zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(std * torch.randn(p.shape, generator=g))
    return model.eval()


@pytest.fixture(scope="module")
def model() -> DiT:
    torch.manual_seed(0)
    return perturbed(DiT(TINY))


@pytest.fixture(scope="module")
def trained() -> DiT:
    """The tiny model after a few Adam steps from its zero-output init towards a toy target."""
    torch.manual_seed(0)
    net = DiT(TINY)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for step in range(4):
        batch = inputs(seed=10 + step)
        target = batch["text"].mean((1, 2))[:, None, None, None, None] + batch["context"]
        loss = (net(**batch) - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@torch.no_grad()
def test_any_latent_size_and_length(model):
    for shape in [(1, 8, 1, 4, 4), (2, 8, 5, 8, 12), (1, 8, 9, 12, 8)]:
        out = model(**inputs(shape))
        assert out.shape == shape and out.dtype == torch.float32
        assert torch.isfinite(out).all()
    bare = model(torch.randn(1, 8, 2, 4, 6), torch.tensor(0.5), torch.randn(1, 3, 384))
    assert bare.shape == (1, 8, 2, 4, 6)  # no mask, pooled or context; 0-dim t


@torch.no_grad()
def test_output_is_zero_at_init():
    torch.manual_seed(0)
    assert torch.equal(DiT(TINY)(**inputs()), torch.zeros(2, 8, 3, 8, 8))


@torch.no_grad()
def test_training_makes_output_depend_on_text_and_context(trained):
    batch = inputs(seed=99)
    out = trained(**batch)
    assert out.abs().mean() > 1e-3
    other_text = {**batch, "text": torch.randn_like(batch["text"])}
    assert not torch.allclose(trained(**other_text), out, atol=1e-4)
    other_context = {**batch, "context": torch.randn_like(batch["context"]) * batch["context_mask"]}
    assert not torch.allclose(trained(**other_context), out, atol=1e-4)
    other_mask = {**batch, "context_mask": torch.zeros_like(batch["context_mask"])}
    assert not torch.allclose(trained(**other_mask), out, atol=1e-4)


def test_all_false_text_mask_is_finite(model):
    batch = inputs()
    batch["text_mask"] = torch.zeros_like(batch["text_mask"])
    batch["x"].requires_grad_(True)
    out = model(**batch)
    out.square().mean().backward()
    assert torch.isfinite(out).all() and torch.isfinite(batch["x"].grad).all()
    with torch.no_grad():  # every token hidden: the text no longer matters
        other = model(**{**batch, "text": torch.randn_like(batch["text"])})
    torch.testing.assert_close(other, out.detach())


@torch.no_grad()
def test_masked_text_tokens_are_ignored(model):
    batch = inputs()
    out = model(**batch)
    text = batch["text"].clone()
    text[:, -2:] = 100.0  # masked out in inputs()
    torch.testing.assert_close(model(**{**batch, "text": text}), out, atol=1e-6, rtol=0)
    text[:, 0] = 100.0  # a real token
    assert not torch.allclose(model(**{**batch, "text": text}), out, atol=1e-4)


def test_patchify_unpatchify_round_trip():
    video = torch.randn(2, 5, 4, 6, 8)  # (B, C, T, H, W)
    patch = (2, 3, 2)
    tokens = patchify(video, patch)
    assert tokens.shape == (2, 2 * 2 * 4, 2 * 3 * 2 * 5)  # (B, L, pt*ph*pw*C)
    assert torch.equal(
        tokens[0, 0].reshape(2, 3, 2, 5).permute(3, 0, 1, 2), video[0, :, :2, :3, :2]
    )
    assert torch.equal(unpatchify(tokens, (2, 2, 4), patch), video)


def test_rope_is_relative():
    g = torch.Generator().manual_seed(0)
    axes = (4, 6, 6)
    q, k = torch.randn(2, 1, 3, 24, 16, generator=g)  # (B, heads, L, head_dim) each
    positions = grid_positions(2, 3, 4)
    assert positions.shape == (24, 3) and positions[5].tolist() == [0, 1, 1]

    def scores(pos):
        rot = rope(pos, axes)
        return apply_rope(q, rot) @ apply_rope(k, rot).transpose(-1, -2)

    shifted = positions + torch.tensor([7.0, -3.0, 11.0])
    torch.testing.assert_close(scores(shifted), scores(positions), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(scores(positions), q @ k.transpose(-1, -2), atol=1e-2)
    assert not torch.allclose(scores(positions.flip(0)), scores(positions), atol=1e-2)


@torch.no_grad()
def test_bf16_autocast_is_close_to_fp32(model):
    batch = inputs()
    ref = model(**batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(**batch)
    assert out.dtype == torch.float32
    assert ((out - ref).norm() / ref.norm()).item() < 5e-2


@torch.no_grad()
def test_save_and_load_round_trip(model, tmp_path):
    model.save_pretrained(tmp_path, meta={"steps": 3})
    assert load_config(tmp_path, DiTConfig) == TINY
    assert json.loads((tmp_path / "config.json").read_text())["meta"] == {"steps": 3}
    assert {v.dtype for v in load_file(str(tmp_path / "model.safetensors")).values()} == {
        torch.float16
    }
    loaded = DiT.from_pretrained(tmp_path).eval()
    assert loaded.config == TINY and next(loaded.parameters()).dtype == torch.float32
    batch = inputs()
    torch.testing.assert_close(loaded(**batch), model(**batch), atol=1e-2, rtol=0)


@torch.no_grad()
def test_seeded_output_slice():
    torch.manual_seed(0)
    out = perturbed(DiT(TINY))(**inputs())
    expected = torch.tensor([-0.471298, 0.339699, 1.045404, 0.359405])
    torch.testing.assert_close(out[0, :4, 1, 2, 3], expected, atol=1e-4, rtol=1e-4)


def test_sizes_not_divisible_by_the_patch_are_a_clear_error(model):
    with pytest.raises(ValueError, match=r"H=5 \(patch 2\)"):
        model(**inputs((1, 8, 2, 5, 8)))
    with pytest.raises(ValueError, match=r"H=7 \(patch 2\), W=3 \(patch 2\)"):
        model(**inputs((1, 8, 2, 7, 3)))
    with pytest.raises(ValueError, match="context and context_mask together"):
        model(**{**inputs(), "context_mask": None})


def test_config_checks_and_preset_sizes():
    with pytest.raises(ValueError, match="rope_axes"):
        replace(TINY, rope_axes=(4, 4, 4))
    with pytest.raises(ValueError, match="heads"):
        replace(TINY, heads=3)
    for name, config in DIT_PRESETS.items():
        assert sum(config.rope_axes) == config.dim // config.heads, name
    assert 10e6 < DiT(DIT_PRESETS["world-s"]).num_params() < 15e6
