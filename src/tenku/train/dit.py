"""``tenku train dit``: the diffusion transformer on cached VAE latents and text states.

The frozen VAE and text encoder would cost more per step than the transformer itself, so both
run once: :func:`build_cache` encodes ``cache_videos`` videos of the dataset (the latent mode,
already scaled) and ``cache_captions`` of each video's captions into one file per shard. Each
step then draws a bucket, ``batch_size`` videos of it and one caption each, all as a pure
function of ``(seed, step)``.

Every sample gets a random conditioning mask over its latent frames (none, the first frame,
the first or last few, both ends, or everything but a gap), given to the transformer as clean
context and left out of the loss, so one model serves text-to-video, image-to-video, extension,
connection and in-filling. A share ``text_dropout`` of samples sees no text, for guidance.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from tenku.diffusion.flow import flow_loss, resolution_shift
from tenku.diffusion.guidance import drop_condition
from tenku.io import atomic_path
from tenku.models.dit import DIT_PRESETS, DiT
from tenku.models.text import MINILM_NAME, TextEncoder, default_text_encoder
from tenku.models.vae import VideoVAE, to_model_input
from tenku.train.loop import StepFn, Trainer, step_generator, step_rng
from tenku.train.presets import TrainPreset
from tenku.world.dataset import WorldDataset, get_preset

CACHE_FORMAT = "tenku-latent-cache/1"
# kinds of conditioning mask and their shares among samples that get one
CONTEXT_KINDS = {"first": 0.4, "head": 0.2, "tail": 0.15, "ends": 0.15, "gap": 0.1}


def context_masks(rng: np.random.Generator, batch: int, frames: int, prob: float) -> np.ndarray:
    """``(batch, frames)`` float32: 1 where a latent frame is given as clean context.

    With probability ``1 - prob`` nothing is given (text-to-video). Otherwise one of
    :data:`CONTEXT_KINDS`: the first frame (image-to-video); the first ``k`` (extend
    forward); the last ``k`` (extend backward); the first and last (connect, loop,
    keyframes); all but a gap (fill). At least one frame is always left to generate.
    """
    masks = np.zeros((batch, frames), dtype=np.float32)
    kinds, shares = list(CONTEXT_KINDS), np.asarray(list(CONTEXT_KINDS.values()))
    for i in range(batch):
        if frames < 2 or rng.random() >= prob:
            continue
        kind = kinds[int(rng.choice(len(kinds), p=shares / shares.sum()))]
        k = int(rng.integers(1, frames))  # 1 .. frames - 1 given
        if kind == "first":
            masks[i, 0] = 1
        elif kind == "head":
            masks[i, :k] = 1
        elif kind == "tail":
            masks[i, frames - k :] = 1
        elif kind == "ends" and frames >= 3:
            masks[i, 0] = masks[i, -1] = 1
        elif kind == "gap" and frames >= 3:
            start = int(rng.integers(1, frames - 1))
            length = int(rng.integers(1, frames - start))
            masks[i] = 1
            masks[i, start : start + length] = 0
        else:
            masks[i, 0] = 1
    return masks


def vae_fingerprint(vae_dir: str | Path) -> str:
    """A short hash of the VAE weights and config: the cache is only valid for that VAE."""
    h = hashlib.sha256()
    for name in ("config.json", "model.safetensors"):
        h.update((Path(vae_dir) / name).read_bytes())
    return h.hexdigest()[:16]


def build_cache(
    preset: TrainPreset,
    dataset: WorldDataset,
    vae: VideoVAE,
    encoder: TextEncoder,
    cache: Path,
    *,
    fingerprint: str,
    device: torch.device,
    progress: bool = True,
) -> list[Path]:
    """Encode ``cache_videos`` videos (whole shards, see :func:`pick_shards`) into ``cache``.

    One ``.pt`` file per shard with ``latents`` (N, C, T', H', W') fp16 (scaled for the
    diffusion model), ``tokens`` (N, K, S, D) fp16, ``mask`` (N, K, S) bool, ``pooled``
    (N, K, D) fp16, ``captions`` and ``bucket``. Finished files are kept, so an interrupted
    build resumes; a cache built with another VAE or recipe is refused.
    """
    cache.mkdir(parents=True, exist_ok=True)
    index_path = cache / "index.json"
    recipe = {
        "format": CACHE_FORMAT,
        "vae": fingerprint,
        "text_encoder": encoder.name,
        "data": dataset.index["recipe"],
        "captions": preset.cache_captions,
        "seed": preset.seed,
    }
    if index_path.exists() and json.loads(index_path.read_text()) != recipe:
        raise ValueError(f"cache: {cache} was built for another VAE or dataset; remove it")
    with atomic_path(index_path) as tmp:
        tmp.write_text(json.dumps(recipe, indent=1))
    chosen = pick_shards(dataset.shards, preset.cache_videos or len(dataset), preset.seed)
    count = sum(s["videos"] for s in chosen)
    paths = [cache / (Path(s["file"]).stem + ".pt") for s in chosen]
    bar = tqdm(total=count, desc="cache latents", unit="video", disable=not progress)
    for shard, path in zip(chosen, paths, strict=True):
        if not path.exists():
            videos, _, caps = dataset.load_shard(shard)
            entry = encode_videos(preset, videos, caps, vae, encoder, device, shard["file"])
            entry["bucket"] = shard["bucket"]
            with atomic_path(path) as tmp:
                torch.save(entry, tmp)
        bar.update(shard["videos"])
    bar.close()
    return paths


def pick_shards(shards: list[dict[str, Any]], videos: int, seed: int) -> list[dict[str, Any]]:
    """Whole shards holding at least ``videos`` videos, every bucket in turn (seeded order).

    Taking shards in one shuffled order left a bucket out by chance (224x128x17 once), so
    the buckets take turns: each bucket's shards are shuffled, then one of each bucket is
    taken per round until enough videos are picked.
    """
    rng = np.random.default_rng([seed, 5])
    queues: dict[str, list[dict[str, Any]]] = {}
    for i in rng.permutation(len(shards)):
        queues.setdefault(shards[int(i)]["bucket"], []).append(shards[int(i)])
    chosen: list[dict[str, Any]] = []
    count = 0
    while count < videos and any(queues.values()):
        for queue in queues.values():
            if queue and count < videos:
                chosen.append(queue.pop(0))
                count += chosen[-1]["videos"]
    return chosen


@torch.no_grad()
def encode_videos(
    preset: TrainPreset,
    videos: np.ndarray | Tensor,
    caps: np.ndarray,
    vae: VideoVAE,
    encoder: TextEncoder,
    device: torch.device,
    name: str,
    *,
    chunk: int = 8,
    store: torch.device | str = "cpu",
) -> dict[str, Any]:
    """One cache entry: ``videos`` (N, T, H, W, 3) uint8 encoded ``chunk`` at a time on
    ``device`` into scaled fp16 latents, and ``cache_captions`` of each row of ``caps`` (N, K)
    (picked by a seed from ``name``) into text states; tensors are kept on ``store``."""
    latents = []
    for i in range(0, len(videos), chunk):
        z = vae.encode(to_model_input(videos[i : i + chunk]).to(device)).mode()
        latents.append(vae.scale_latents(z).half().to(store))
    rng = np.random.default_rng(
        [preset.seed, 6, int(hashlib.sha1(name.encode()).hexdigest(), 16) % 2**32]
    )
    k = min(preset.cache_captions, caps.shape[1])
    picked = [[str(row[j]) for j in rng.choice(len(row), k, replace=False)] for row in caps]
    flat = [c for row in picked for c in row]
    emb = encoder.encode(flat).trimmed()
    n, s, d = len(videos), emb.tokens.shape[1], emb.tokens.shape[2]
    return {
        "latents": torch.cat(latents),
        "tokens": emb.tokens.half().reshape(n, k, s, d).to(store),
        "mask": emb.mask.reshape(n, k, s).to(store),
        "pooled": emb.pooled.half().reshape(n, k, d).to(store),
        "captions": picked,
    }


class LatentBatches:
    """Cache entries in memory, grouped by bucket; ``batch(step)`` is deterministic.

    ``entries`` are dicts as :func:`encode_videos` returns them, with their ``bucket``; their
    tensors may live on any device (a batch is cut where they are).
    """

    def __init__(self, entries: list[dict[str, Any]], preset: TrainPreset):
        self.preset = preset
        groups: dict[str, list[dict[str, Any]]] = {}
        for entry in entries:
            groups.setdefault(entry["bucket"], []).append(entry)
        self.buckets = sorted(groups)
        self.data = {b: _concat(groups[b]) for b in self.buckets}
        sizes = np.asarray([len(self.data[b]["latents"]) for b in self.buckets], dtype=np.float64)
        self.weights = sizes / sizes.sum()  # buckets in proportion to their videos

    @classmethod
    def from_files(cls, paths: list[Path], preset: TrainPreset) -> LatentBatches:
        """The entries :func:`build_cache` wrote."""
        return cls([torch.load(path, weights_only=False) for path in paths], preset)

    def __len__(self) -> int:
        return sum(len(d["latents"]) for d in self.data.values())

    def batch(self, step: int) -> dict[str, Any]:
        rng = step_rng(self.preset.seed, step, 4)
        bucket = self.buckets[int(rng.choice(len(self.buckets), p=self.weights))]
        d = self.data[bucket]
        n, k = d["latents"].shape[0], d["tokens"].shape[1]
        where = d["latents"].device
        rows = torch.as_tensor(
            rng.choice(n, self.preset.batch_size, replace=n < self.preset.batch_size), device=where
        )
        cols = torch.as_tensor(rng.integers(k, size=len(rows)), device=where)
        frames = d["latents"].shape[2]
        masks = context_masks(rng, len(rows), frames, self.preset.context_prob)
        return {
            "bucket": bucket,
            "latents": d["latents"][rows].float(),
            "tokens": d["tokens"][rows, cols].float(),
            "mask": d["mask"][rows, cols],
            "pooled": d["pooled"][rows, cols].float(),
            "context": torch.from_numpy(masks),
        }


def _concat(entries: list[dict[str, Any]]) -> dict[str, Tensor]:
    length = max(e["tokens"].shape[2] for e in entries)

    def pad(x: Tensor, value: Any = 0) -> Tensor:  # right-pad the token axis (dim 2)
        extra = length - x.shape[2]
        if extra == 0:
            return x
        shape = list(x.shape)
        shape[2] = extra
        return torch.cat([x, x.new_full(shape, value)], dim=2)

    return {
        "latents": torch.cat([e["latents"] for e in entries]),
        "tokens": torch.cat([pad(e["tokens"]) for e in entries]),
        "mask": torch.cat([pad(e["mask"], False) for e in entries]),
        "pooled": torch.cat([e["pooled"] for e in entries]),
    }


def save_dit(model: nn.Module, directory: Path, meta: dict[str, Any]) -> None:
    assert isinstance(model, DiT)
    model.save_pretrained(directory, meta=meta)


def train_dit(
    preset: TrainPreset,
    out: str | Path,
    *,
    vae: str | Path,
    cache: str | Path,
    data: str | Path | None = None,
    device: torch.device,
    precision: torch.dtype | None = torch.float32,
    steps: int | None = None,
    text_encoder: TextEncoder | None = None,
    progress: bool = True,
) -> Trainer:
    """Train (or resume) the transformer of ``preset`` on latents of the VAE in ``vae``."""
    torch.manual_seed(preset.seed)
    vae_model = VideoVAE.from_pretrained(vae, device=device)
    encoder = default_text_encoder(device=device) if text_encoder is None else text_encoder
    dataset = WorldDataset(get_preset(preset.data) if data is None else data, shuffle=False)
    fingerprint = vae_fingerprint(vae)
    paths = build_cache(
        preset,
        dataset,
        vae_model,
        encoder,
        Path(cache),
        fingerprint=fingerprint,
        device=device,
        progress=progress,
    )
    channels = vae_model.config.latent_channels
    del vae_model
    batches = LatentBatches.from_files(paths, preset)
    model = DiT(replace(DIT_PRESETS[preset.model], latent_channels=channels))  # the VAE's
    trainer = Trainer(
        model, preset, out, device=device, precision=precision, save=save_dit, progress=progress
    )
    trainer.resume()
    trainer.meta.update(
        vae_fingerprint=fingerprint,
        text_encoder=getattr(encoder, "name", MINILM_NAME),
        cached_videos=len(batches),
        buckets=batches.buckets,
        parameters=model.num_params(),
    )

    step_fn = dit_step_fn(model, batches, preset, device)
    trainer.fit(step_fn, steps=steps)
    return trainer


def dit_step_fn(
    model: DiT, batches: LatentBatches, preset: TrainPreset, device: torch.device
) -> StepFn:
    """The loss of step ``step``: a batch of ``batches``, text dropped for a share
    ``text_dropout`` of samples, context frames given and left out of the loss."""

    def step_fn(step: int) -> tuple[Tensor, dict[str, float]]:
        b = batches.batch(step)
        x0 = b["latents"].to(device)
        g = step_generator(preset.seed, step, device)
        drop = drop_condition(preset.text_dropout, len(x0), g, device=device)
        text_mask = b["mask"].to(device) & ~drop[:, None]
        pooled = b["pooled"].to(device) * (~drop)[:, None]
        context = b["context"].to(device)[:, None, :, None, None].expand(-1, 1, -1, *x0.shape[3:])
        grid = model.token_grid(x0)
        loss, _ = flow_loss(
            model,
            x0,
            shift=resolution_shift(grid[0] * grid[1] * grid[2]),
            loss_mask=1 - context,
            generator=g,
            extra_args={
                "text": b["tokens"].to(device),
                "text_mask": text_mask,
                "pooled": pooled,
                "context": x0,
                "context_mask": context,
            },
        )
        return loss, {}

    return step_fn
