"""A BERT encoder for inference, loaded straight from a Hugging Face folder.

``transformers`` would do the same job, but importing it and building the model costs about
3 s, most of ``tenku generate``'s cold start, for six small layers. This module reads the
same ``config.json`` and ``model.safetensors`` (``BertModel`` key names) and the fast
tokenizer in ``tokenizer.json`` (the ``tokenizers`` package), and computes the same
``last_hidden_state`` (a test checks it against ``transformers`` to 1e-5).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn


class BertLayer(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int, eps: float):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = (nn.Linear(dim, dim) for _ in range(3))
        self.attn_out = nn.Linear(dim, dim)
        self.attn_norm = nn.LayerNorm(dim, eps=eps)
        self.up = nn.Linear(dim, hidden)
        self.down = nn.Linear(hidden, dim)
        self.out_norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        """``x`` (B, L, D), ``bias`` (B, 1, 1, L) additive attention mask -> (B, L, D)."""
        b, length, d = x.shape

        def split(t: Tensor) -> Tensor:  # (B, L, D) -> (B, heads, L, D / heads)
            return t.view(b, length, self.heads, d // self.heads).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        a = a.transpose(1, 2).reshape(b, length, d)
        x = self.attn_norm(x + self.attn_out(a))
        return self.out_norm(x + self.down(F.gelu(self.up(x))))


class BertEncoder(nn.Module):
    """Token ids -> last hidden states, as ``BertModel(...).last_hidden_state``."""

    def __init__(self, config: dict):
        super().__init__()
        dim, eps = config["hidden_size"], config["layer_norm_eps"]
        if dim % config["num_attention_heads"]:
            raise ValueError("text: hidden_size must be a multiple of num_attention_heads")
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("text: only absolute position embeddings are supported")
        self.word = nn.Embedding(config["vocab_size"], dim)
        self.position = nn.Embedding(config["max_position_embeddings"], dim)
        self.token_type = nn.Embedding(config["type_vocab_size"], dim)
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.layers = nn.ModuleList(
            BertLayer(dim, config["num_attention_heads"], config["intermediate_size"], eps)
            for _ in range(config["num_hidden_layers"])
        )
        # a pruned vocabulary (prune_vocabulary): token id -> row of `word`
        self.register_buffer("vocab_map", None, persistent=False)

    def prune_vocabulary(self, kept: Tensor, unk_id: int = 100) -> None:
        """Keep the embedding rows of token ids ``kept`` (1-D, must hold ``unk_id``) only.

        Any other id reads the ``unk_id`` row. Prompts whose tokens are all kept get the same
        states as before; the weights shrink by the rows left out (the device run carries a
        copy pruned to the world's caption vocabulary, 22 MB instead of 45 MB in fp16).
        """
        kept = kept.long().flatten()
        where = (kept == unk_id).nonzero()
        if len(where) != 1:
            raise ValueError(f"text: the kept ids must hold the [UNK] id {unk_id} once")
        vocab = self.word.num_embeddings
        if self.vocab_map is not None:
            raise ValueError("text: the vocabulary is already pruned")
        rows = self.word.weight.data[kept].clone()
        self.word = nn.Embedding.from_pretrained(rows, freeze=True)
        vocab_map = torch.full((vocab,), int(where[0, 0]), dtype=torch.long)
        vocab_map[kept] = torch.arange(len(kept))
        self.vocab_map = vocab_map.to(rows.device)

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        """``ids`` (B, L) long, ``mask`` (B, L) bool -> (B, L, D)."""
        positions = torch.arange(ids.shape[1], device=ids.device)
        if self.vocab_map is not None:
            ids = self.vocab_map[ids]
        x = self.word(ids) + self.position(positions) + self.token_type.weight[0]
        x = self.norm(x)
        bias = torch.zeros(mask.shape, dtype=x.dtype, device=x.device)
        bias = bias.masked_fill(~mask, torch.finfo(x.dtype).min)[:, None, None, :]
        for layer in self.layers:
            x = layer(x, bias)
        return x

    @classmethod
    def from_folder(cls, path: str | Path) -> BertEncoder:
        """Build from ``config.json`` and load ``model.safetensors`` (BertModel names)."""
        path = Path(path)
        config = json.loads((path / "config.json").read_text())
        model = cls(config)
        state = load_file(path / "model.safetensors")
        if "word_ids" in state:  # a copy pruned to a vocabulary (tenku.train.device)
            model.prune_vocabulary(state["word_ids"], config.get("unk_token_id", 100))
        ours = {
            "word.weight": "embeddings.word_embeddings.weight",
            "position.weight": "embeddings.position_embeddings.weight",
            "token_type.weight": "embeddings.token_type_embeddings.weight",
            "norm.weight": "embeddings.LayerNorm.weight",
            "norm.bias": "embeddings.LayerNorm.bias",
        }
        parts = {
            "query": "attention.self.query",
            "key": "attention.self.key",
            "value": "attention.self.value",
            "attn_out": "attention.output.dense",
            "attn_norm": "attention.output.LayerNorm",
            "up": "intermediate.dense",
            "down": "output.dense",
            "out_norm": "output.LayerNorm",
        }
        for i in range(len(model.layers)):
            for mine, theirs in parts.items():
                for p in ("weight", "bias"):
                    ours[f"layers.{i}.{mine}.{p}"] = f"encoder.layer.{i}.{theirs}.{p}"
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in state else ""
        missing = [v for v in ours.values() if prefix + v not in state]
        if missing:
            raise ValueError(f"text: {path / 'model.safetensors'} lacks {missing[:3]}")
        model.load_state_dict({k: state[prefix + v] for k, v in ours.items()})
        return model.eval().requires_grad_(False)
