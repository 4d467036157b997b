"""Reproducible, sharded training sets of the sandbox world, and a streaming reader.

A dataset is a folder of shards plus ``index.json``. Each shard is a compressed ``.npz``
holding videos of one bucket (one width, height and frame count), so a batch is always
drawn from one shard; a reader holds one shard in memory at a time. Shard ``k`` is drawn
from ``np.random.default_rng([seed, k])`` alone, so any shard can be rebuilt, in any
order, on any number of processes, and comes out byte-identical.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from tenku.io import atomic_path
from tenku.world.captions import captions
from tenku.world.render import render
from tenku.world.sample import SamplerConfig, sample_scene
from tenku.world.spec import SceneSpec

FORMAT = "tenku-world-shards/1"


@dataclass(frozen=True)
class Bucket:
    """One training shape: every video of a bucket has this size and length."""

    width: int  # pixels, multiple of 16
    height: int  # pixels, multiple of 16
    frames: int  # frames per video (4k + 1 suits a VAE with 4x causal time compression)
    fps: float = 8.0  # frames per second
    weight: float = 1.0  # share of the dataset's shards

    @property
    def name(self) -> str:
        return f"{self.width}x{self.height}x{self.frames}"


@dataclass(frozen=True)
class DatasetPreset:
    """A named, seeded recipe for a training set."""

    name: str
    description: str
    buckets: tuple[Bucket, ...]
    videos: int  # total number of videos
    shard_size: int  # videos per shard (bounds a reader's memory)
    captions_per_video: int = 4  # independent captions stored per video
    seed: int = 0
    sampler: SamplerConfig = field(default_factory=SamplerConfig)  # size/length set per bucket

    @property
    def num_shards(self) -> int:
        return -(-self.videos // self.shard_size)

    def shard_bucket(self, k: int) -> Bucket:
        """The bucket of shard ``k``: shards are split between buckets by weight."""
        weights = np.asarray([b.weight for b in self.buckets], dtype=np.float64)
        position = (k + 0.5) / self.num_shards * weights.sum()
        return self.buckets[int(np.searchsorted(np.cumsum(weights), position))]

    def shard_videos(self, k: int) -> int:
        return min(self.shard_size, self.videos - k * self.shard_size)


_SQUARE, _WIDE, _TALL = (64, 64), (112, 64), (64, 112)  # 1:1, ~16:9 and ~9:16 at 64 px
PRESETS: dict[str, DatasetPreset] = {
    p.name: p
    for p in (
        DatasetPreset(
            name="tiny",
            description="48 videos in 6 shards, 32x32 and 64x32 at 9 frames: for tests",
            buckets=(Bucket(32, 32, 9), Bucket(64, 32, 9)),
            videos=48,
            shard_size=8,
        ),
        DatasetPreset(
            name="world-64",
            description=(
                "24,000 videos at 64 px in 1:1, 16:9 (112x64) and 9:16 (64x112), "
                "17 and 33 frames at 8 fps: a quick set for experiments"
            ),
            buckets=tuple(
                Bucket(w, h, n, weight=(3.0 if (w, h) == _SQUARE else 1.0) * (2 if n == 17 else 1))
                for n in (17, 33)
                for w, h in (_SQUARE, _WIDE, _TALL)
            ),
            videos=24_000,
            shard_size=256,
        ),
        DatasetPreset(
            name="world-128",
            description=(
                "12,000 videos at 128 px in 1:1, 16:9 (224x128) and 9:16 (128x224), 17 and 33 "
                "frames at 8 fps: the shipped default model's training set"
            ),
            buckets=tuple(
                Bucket(w, h, n, weight=(3.0 if w == h else 1.0) * (2 if n == 17 else 1))
                for n in (17, 33)
                for w, h in ((128, 128), (224, 128), (128, 224))
            ),
            videos=12_000,
            shard_size=64,
        ),
    )
}


def get_preset(name: str) -> DatasetPreset:
    if name not in PRESETS:
        raise ValueError(f"preset: {name!r} is not one of {sorted(PRESETS)}")
    return PRESETS[name]


def draw_scenes(
    seed: int, stream: int, k: int, bucket: Bucket, n: int, captions_per: int = 0
) -> tuple[list[SceneSpec], list[list[str]]]:
    """Chunk ``k`` of a stream of scenes: ``n`` specs of ``bucket``'s shape and
    ``captions_per`` captions each, a pure function of ``(seed, stream, k)``.

    Sampling a scene costs 2-5 ms of Python (layouts are drawn by rejection), so a training run
    that needs scenes faster than that draws chunks in worker processes (:func:`scene_chunks`).
    """
    rng = np.random.default_rng([seed, stream, k])
    cfg = SamplerConfig(width=bucket.width, height=bucket.height, frames=bucket.frames,
                        fps=bucket.fps)  # fmt: skip
    specs = [sample_scene(rng, cfg) for _ in range(n)]
    return specs, [captions(s, rng, captions_per) for s in specs]


def scene_chunks(
    jobs: list[tuple[int, int, int, Bucket, int, int]], workers: int = 0
) -> Iterator[tuple[list[SceneSpec], list[list[str]]]]:
    """:func:`draw_scenes` of each job ``(seed, stream, k, bucket, n, captions_per)``, in
    order; with ``workers`` > 1 they are drawn ahead in spawned processes (safe beside CUDA).
    Stopping early (closing the generator) cancels what was not drawn yet."""
    if workers <= 1:
        for job in jobs:
            yield draw_scenes(*job)
        return
    import multiprocessing

    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        futures = [pool.submit(draw_scenes, *job) for job in jobs]
        for future in futures:
            yield future.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def make_shard(preset: DatasetPreset, k: int) -> dict[str, np.ndarray]:
    """Draw and render shard ``k`` of ``preset`` (deterministic in ``preset.seed`` and ``k``).

    Returns ``videos`` (N, T, H, W, 3) uint8, ``specs`` (N,) JSON strings and
    ``captions`` (N, K) strings.
    """
    if not 0 <= k < preset.num_shards:
        raise ValueError(f"shard: {k} must lie in [0, {preset.num_shards})")
    b = preset.shard_bucket(k)
    cfg = replace(preset.sampler, width=b.width, height=b.height, frames=b.frames, fps=b.fps)
    rng = np.random.default_rng([preset.seed, k])
    specs = [sample_scene(rng, cfg) for _ in range(preset.shard_videos(k))]
    return {
        "videos": np.stack([render(s) for s in specs]),
        "specs": np.asarray([s.to_json() for s in specs]),
        "captions": np.asarray([captions(s, rng, preset.captions_per_video) for s in specs]),
    }


def shard_name(preset: DatasetPreset, k: int) -> str:
    return f"shard-{k:05d}-{preset.shard_bucket(k).name}.npz"


def _write_shard(preset: DatasetPreset, k: int, out: Path) -> dict[str, Any]:
    path = out / shard_name(preset, k)
    if not path.exists():  # shards are written atomically: one that exists is whole
        arrays = make_shard(preset, k)
        with atomic_path(path) as tmp, tmp.open("wb") as f:
            np.savez_compressed(f, **arrays)
    return {
        "file": path.name,
        "bucket": preset.shard_bucket(k).name,
        "videos": preset.shard_videos(k),
        "bytes": path.stat().st_size,
    }


def _recipe(preset: DatasetPreset) -> dict[str, Any]:
    # tuples -> lists and int keys -> strings: the recipe as index.json reads back
    return json.loads(json.dumps(asdict(preset)))


def write_dataset(
    preset: DatasetPreset, out: str | Path, *, workers: int = 1, progress: bool = True
) -> Path:
    """Write every shard of ``preset`` into ``out`` and then ``out/index.json``.

    Rerunning into the same folder resumes: finished shards are kept. A folder holding a
    different recipe is refused rather than mixed. Returns the index path.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    index_path = out / "index.json"
    recipe = _recipe(preset)
    if index_path.exists():
        found = json.loads(index_path.read_text())
        if found.get("recipe") != recipe:
            raise ValueError(
                f"out: {out} already holds a different dataset "
                f"(preset {found.get('recipe', {}).get('name')!r}); choose another folder"
            )
        return index_path
    bar = tqdm(
        total=preset.num_shards, desc=f"dataset {preset.name}", unit="shard", disable=not progress
    )
    ks = range(preset.num_shards)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            jobs = [pool.submit(_write_shard, preset, k, out) for k in ks]
            shards = []
            for job in jobs:
                shards.append(job.result())
                bar.update()
    else:
        shards = []
        for k in ks:
            shards.append(_write_shard(preset, k, out))
            bar.update()
    bar.close()
    index = {"format": FORMAT, "recipe": recipe, "videos": preset.videos, "shards": shards}
    with atomic_path(index_path) as tmp:
        tmp.write_text(json.dumps(index, indent=1))
    return index_path


@dataclass(frozen=True)
class Sample:
    """One training example."""

    video: np.ndarray  # (T, H, W, 3) uint8
    caption: str
    spec: SceneSpec
    bucket: str  # e.g. "64x64x17"


class WorldDataset:
    """Streams a dataset written by :func:`write_dataset`, one shard in memory at a time.

    ``root`` is the dataset folder, or a :class:`DatasetPreset` whose shards are then drawn
    and rendered on the fly (the same bytes :func:`write_dataset` would store).

    Iterating yields :class:`Sample` objects; :meth:`batches` yields lists of samples of
    one bucket. With ``shuffle`` the shard order, the order within each shard and the
    caption picked per video change every epoch, reproducibly from ``seed``. ``rank`` and
    ``world_size`` split the shards between data-parallel processes or loader workers.
    """

    def __init__(
        self,
        root: str | Path | DatasetPreset,
        *,
        shuffle: bool = True,
        seed: int = 0,
        buckets: set[str] | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.preset = root if isinstance(root, DatasetPreset) else None
        if self.preset is not None:  # no folder: shards are drawn and rendered on the fly
            self.root = None
            self.index = {
                "format": FORMAT,
                "recipe": _recipe(self.preset),
                "shards": [
                    {
                        "file": shard_name(self.preset, k),
                        "bucket": self.preset.shard_bucket(k).name,
                        "videos": self.preset.shard_videos(k),
                        "k": k,
                    }
                    for k in range(self.preset.num_shards)
                ],
            }
        else:
            self.root = Path(root)
            index_path = self.root / "index.json"
            if not index_path.exists():
                raise FileNotFoundError(
                    f"root: {self.root} has no index.json; write it with "
                    "`tenku world dataset --preset NAME --out DIR`"
                )
            self.index = json.loads(index_path.read_text())
            if self.index.get("format") != FORMAT:
                raise ValueError(f"root: {index_path} is not a {FORMAT} dataset")
        shards = [s for s in self.index["shards"] if buckets is None or s["bucket"] in buckets]
        self.shards = shards[rank::world_size]
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0

    def __len__(self) -> int:
        return sum(s["videos"] for s in self.shards)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[Sample]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.shards)) if self.shuffle else range(len(self.shards))
        for i in order:
            shard = self.shards[int(i)]
            videos, specs, caps = self.load_shard(shard)
            rows = rng.permutation(len(videos)) if self.shuffle else range(len(videos))
            for j in rows:
                c = int(rng.integers(caps.shape[1])) if self.shuffle else 0
                yield Sample(
                    video=videos[j],
                    caption=str(caps[j, c]),
                    spec=SceneSpec.from_json(str(specs[j])),
                    bucket=shard["bucket"],
                )

    def load_shard(self, shard: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(videos, specs, captions)`` of one entry of ``self.shards``."""
        if self.preset is not None:
            arrays = make_shard(self.preset, shard["k"])
            return arrays["videos"], arrays["specs"], arrays["captions"]
        assert self.root is not None
        with np.load(self.root / shard["file"]) as z:
            return z["videos"], z["specs"], z["captions"]

    def batches(self, batch_size: int, *, drop_last: bool = True) -> Iterator[list[Sample]]:
        """Lists of ``batch_size`` samples, each list from one shard (so one bucket)."""
        batch: list[Sample] = []
        for sample in self:
            if batch and sample.bucket != batch[0].bucket:
                if not drop_last:
                    yield batch
                batch = []
            batch.append(sample)
            if len(batch) == batch_size:
                yield batch
                batch = []
        if batch and not drop_last:
            yield batch
