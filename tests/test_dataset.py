"""Datasets: seeded, sharded, streamable, resumable, and free of held-out combinations."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage

from caption_parser import parse
from tenku.cli import main
from tenku.io import read_video
from tenku.world.dataset import WorldDataset, get_preset, make_shard, write_dataset
from tenku.world.rules import COLOURS, HOLDOUT
from tenku.world.sample import SamplerConfig, sample_scene
from tenku.world.spec import SceneSpec


def held_out(colour: str, shape: str | None, motion: str | None) -> bool:
    return (colour, shape) in HOLDOUT.colour_shape or (colour, motion) in HOLDOUT.colour_motion


def shapes_in_pixels(frame: np.ndarray) -> list[tuple[str, str]]:
    """(colour, shape) of every whole object drawn in ``frame``, from its pixels alone.

    Exact-colour pixels form each object's interior; the shape follows from how much of its
    box it fills and where its widest row lies (triangles at the bottom, diamonds mid-way).
    Objects cut by the canvas edge or the pillar are skipped.
    """
    found = []
    for name, rgb in COLOURS.items():
        labels, _ = ndimage.label((frame == rgb).all(-1))
        for label, box in enumerate(ndimage.find_objects(labels), start=1):
            ys, xs = box
            h, w = ys.stop - ys.start, xs.stop - xs.start
            if h < 8 or abs(h - w) > 2:  # too small to tell, or cut by an edge or the pillar
                continue
            mask = labels[box] == label
            fill = mask.mean()
            widths = mask.sum(1)
            if fill > 0.9:
                shape = "square"
            elif fill > 0.68:
                shape = "circle"
            elif widths.argmax() > 0.75 * h:
                shape = "triangle"
            else:
                shape = "diamond"
            found.append((name, shape))
    return found


def test_pixel_shape_reader_reads_every_shape():
    from tenku.world.render import render
    from tenku.world.spec import ObjectSpec

    for shape in ("circle", "square", "triangle", "diamond"):
        spec = SceneSpec((ObjectSpec("orange", shape, "small", 0.3, 0.3),), width=128, height=128)
        assert shapes_in_pixels(render(spec)[0]) == [("orange", shape)]


def test_sampler_never_draws_holdout():
    rng = np.random.default_rng(11)
    configs = [
        SamplerConfig(),
        SamplerConfig(counting_prob=0.6),
        SamplerConfig(width=112, height=64, frames=33, pillar_prob=0.8),
        SamplerConfig(motions={"up": 1, "left": 1, "bounce": 1, "shrink": 1, "fall": 1}),
    ]
    seen = set()
    for i in range(4000):
        spec = sample_scene(rng, configs[i % len(configs)])
        for o in spec.objects:
            assert not held_out(o.colour, o.shape, o.motion), spec
            seen.add((o.colour, o.shape))
    assert len(seen) == 32 - len(HOLDOUT.colour_shape)  # everything else does appear


def test_holdout_can_be_sampled_on_request():
    cfg = SamplerConfig(exclude_holdout=False, colours={"red": 1}, shapes={"triangle": 1})
    spec = sample_scene(np.random.default_rng(0), cfg)
    assert held_out(spec.objects[0].colour, spec.objects[0].shape, None)


def test_written_samples_and_dataset_have_no_holdout(tmp_path):
    """Specs, captions and pixels of `tenku world sample` and `tenku world dataset` output."""
    assert main(["world", "sample", "-n", "40", "--out", str(tmp_path / "s"), "-q"]) == 0
    for meta in sorted((tmp_path / "s").glob("*.json")):
        data = json.loads(meta.read_text())
        spec = SceneSpec.from_dict(data["spec"])
        for o in spec.objects:
            assert not held_out(o.colour, o.shape, o.motion)
        for text in [data["caption"], *data["captions"], data["canonical_caption"]]:
            for m in parse(text).mentions:
                assert not held_out(m.colour, m.shape, m.motion), text
        frames = read_video(tmp_path / "s" / data["video"]).frames
        assert frames.shape == (spec.frames, spec.height, spec.width, 3)

    preset = replace(get_preset("tiny"), videos=24)
    write_dataset(preset, tmp_path / "d", progress=False)
    checked = 0
    for sample in WorldDataset(tmp_path / "d", shuffle=False):
        for o in sample.spec.objects:
            assert not held_out(o.colour, o.shape, o.motion)
        for m in parse(sample.caption).mentions:
            assert not held_out(m.colour, m.shape, m.motion), sample.caption
        checked += 1
    assert checked == 24

    big = replace(
        preset, name="pixels", buckets=(replace(preset.buckets[0], width=128, height=128),)
    )
    shard = make_shard(big, 0)
    pairs = {p for video in shard["videos"] for frame in video for p in shapes_in_pixels(frame)}
    assert pairs and not pairs & HOLDOUT.colour_shape


def test_dataset_is_reproducible_and_resumes(tmp_path):
    preset = get_preset("tiny")
    write_dataset(preset, tmp_path / "a", progress=False, workers=2)
    write_dataset(preset, tmp_path / "b", progress=False)
    index = json.loads((tmp_path / "a" / "index.json").read_text())
    assert index["videos"] == preset.videos == sum(s["videos"] for s in index["shards"])
    assert {s["bucket"] for s in index["shards"]} == {"32x32x9", "64x32x9"}
    for shard in index["shards"]:
        with (
            np.load(tmp_path / "a" / shard["file"]) as a,
            np.load(tmp_path / "b" / shard["file"]) as b,
        ):
            for key in ("videos", "specs", "captions"):
                np.testing.assert_array_equal(a[key], b[key])
    # resume: a lost shard (and no index yet) is rebuilt identically, the rest are kept
    lost = tmp_path / "a" / index["shards"][2]["file"]
    kept = tmp_path / "a" / index["shards"][0]["file"]
    mtime = kept.stat().st_mtime_ns
    lost.unlink()
    (tmp_path / "a" / "index.json").unlink()
    write_dataset(preset, tmp_path / "a", progress=False)
    assert kept.stat().st_mtime_ns == mtime
    with np.load(lost) as a, np.load(tmp_path / "b" / lost.name) as b:
        np.testing.assert_array_equal(a["videos"], b["videos"])
    assert not list((tmp_path / "a").glob(".*"))  # no temp files left behind
    # another seed into the same folder is refused, not mixed
    with pytest.raises(ValueError, match="different dataset"):
        write_dataset(replace(preset, seed=1), tmp_path / "a", progress=False)


def test_stream_batches_shuffle_and_split(tmp_path):
    preset = get_preset("tiny")
    write_dataset(preset, tmp_path, progress=False)
    ds = WorldDataset(tmp_path, seed=3)
    assert len(ds) == preset.videos
    batches = list(ds.batches(4))
    assert batches and all(len({s.bucket for s in b}) == 1 for b in batches)
    for b in batches:
        shape = b[0].video.shape
        assert all(s.video.shape == shape and s.video.dtype == np.uint8 for s in b)
        w, h, t = (int(v) for v in b[0].bucket.split("x"))
        assert shape == (t, h, w, 3)
    specs = lambda d: [s.spec.to_json() for s in d]  # noqa: E731
    assert specs(WorldDataset(tmp_path, seed=3)) == specs(WorldDataset(tmp_path, seed=3))
    epoch1 = WorldDataset(tmp_path, seed=3)
    epoch1.set_epoch(1)
    assert specs(epoch1) != specs(ds) and sorted(specs(epoch1)) == sorted(specs(ds))
    parts = [specs(WorldDataset(tmp_path, rank=r, world_size=2)) for r in range(2)]
    assert sorted(parts[0] + parts[1]) == sorted(specs(ds)) and not set(parts[0]) & set(parts[1])
    only = WorldDataset(tmp_path, buckets={"64x32x9"})
    assert {s.bucket for s in only} == {"64x32x9"}


def test_reader_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="tenku world dataset"):
        WorldDataset(tmp_path)
    with pytest.raises(ValueError, match="preset"):
        get_preset("huge")
