"""Training: schedule, conditioning masks, the VAE and DiT trainers, checkpoint and resume."""

import itertools
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tenku.cli import main
from tenku.models.dit import DiT
from tenku.models.vae import VideoVAE
from tenku.train.dit import CONTEXT_KINDS, context_masks, pick_shards, train_dit
from tenku.train.loop import cpu_has_bf16, lr_at, pick_precision, plot_history
from tenku.train.presets import TRAIN_PRESETS, get_train_preset
from tenku.train.vae import CropSampler, heldout_clips, train_vae

CPU = torch.device("cpu")


def test_lr_warms_up_then_decays_to_the_floor():
    p = replace(get_train_preset("vae", "world"), steps=1000, warmup=100, lr=1e-3)
    lrs = [lr_at(s, p) for s in range(1000)]
    assert lrs[0] == pytest.approx(1e-5) and lrs[99] == pytest.approx(1e-3)
    assert all(a >= b for a, b in itertools.pairwise(lrs[100:]))  # monotone decay
    assert lr_at(1000, p) == pytest.approx(p.min_lr_ratio * 1e-3)


def test_presets_are_valid_and_named():
    for kind, presets in TRAIN_PRESETS.items():
        for name, p in presets.items():
            assert p.kind == kind and p.name == name
    with pytest.raises(ValueError, match="preset: 'nope'"):
        get_train_preset("dit", "nope")
    with pytest.raises(ValueError, match="crop_frames"):
        replace(get_train_preset("vae", "tiny"), crop_frames=6)


def test_cpu_precision_follows_the_instruction_set():
    # a CPU with native bf16 leaves the choice to a measured step (None); others get fp32
    want = None if cpu_has_bf16() else torch.float32
    assert pick_precision("auto", CPU) == want
    assert pick_precision("bf16", CPU) == torch.bfloat16
    with pytest.raises(ValueError, match="precision"):
        pick_precision("fp8", CPU)


def test_context_masks_cover_every_kind_and_leave_work_to_do():
    rng = np.random.default_rng(0)
    masks = context_masks(rng, 4000, 9, prob=0.5)
    assert masks.shape == (4000, 9) and set(np.unique(masks)) <= {0.0, 1.0}
    given = masks.sum(1)
    assert (given < 9).all()  # at least one latent frame is always generated
    assert abs((given == 0).mean() - 0.5) < 0.03  # half text-to-video
    first_only = (masks[:, 0] == 1) & (given == 1)
    ends = (masks[:, 0] == 1) & (masks[:, -1] == 1) & (given == 2)
    tail = (masks[:, 0] == 0) & (masks[:, -1] == 1)
    gap = (masks[:, 0] == 1) & (masks[:, -1] == 1) & (given > 2)
    assert all(x.mean() > 0.02 for x in (first_only, ends, tail, gap))
    assert len(CONTEXT_KINDS) == 5
    assert not context_masks(rng, 10, 9, prob=0.0).any()
    assert not context_masks(rng, 10, 1, prob=1.0).any()  # one frame: nothing to give


def test_cache_takes_shards_of_every_bucket_in_turn():
    from tenku.world.dataset import WorldDataset, get_preset

    shards = WorldDataset(get_preset("world-128")).shards
    buckets = {s["bucket"] for s in shards}
    chosen = pick_shards(shards, 2048, seed=0)
    assert sum(s["videos"] for s in chosen) >= 2048
    assert {s["bucket"] for s in chosen} == buckets  # none left out by chance
    assert len({s["file"] for s in chosen}) == len(chosen)  # no shard twice
    assert chosen == pick_shards(shards, 2048, seed=0)
    assert chosen != pick_shards(shards, 2048, seed=1)
    assert len(pick_shards(shards, 10**9, seed=0)) == len(shards)  # asked for more: all


def test_crops_are_a_pure_function_of_the_step():
    p = get_train_preset("vae", "tiny")
    a, b = CropSampler(p, None, 8), CropSampler(p, None, 8)
    assert a(3).shape == (p.batch_size, p.crop_frames, p.crop_size, p.crop_size, 3)
    np.testing.assert_array_equal(a(3), b(3))
    assert not np.array_equal(a(3), a(4))


def test_heldout_clips_are_reproducible():
    np.testing.assert_array_equal(
        heldout_clips(2, width=64, height=64, frames=5),
        heldout_clips(2, width=64, height=64, frames=5),
    )


def test_vae_training_checkpoints_and_resumes_exactly(tmp_path):
    p = get_train_preset("vae", "tiny")
    whole = train_vae(p, tmp_path / "whole", device=CPU, eval_clips=2, progress=False)
    part = train_vae(p, tmp_path / "part", device=CPU, steps=2, eval_clips=2, progress=False)
    assert part.step == 2 and "heldout_psnr_db" not in part.meta
    resumed = train_vae(p, tmp_path / "part", device=CPU, eval_clips=2, progress=False)
    assert resumed.step == p.steps
    for key, value in whole.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, rtol=0, atol=0)
    out = tmp_path / "whole"
    assert {"state.pt", "history.json", "loss.png", "model"} <= {f.name for f in out.iterdir()}
    assert len(json.loads((out / "history.json").read_text())) == p.steps
    meta = json.loads((out / "model" / "config.json").read_text())["meta"]
    assert meta["command"] == "tenku train vae --preset tiny" and meta["steps"] == p.steps
    assert meta["heldout_psnr_db"] > 0
    vae = VideoVAE.from_pretrained(out / "model")
    assert vae.config.scaling_factor == pytest.approx(meta["scaling_factor"])
    weights = load_file(out / "model" / "model.safetensors")
    assert all(t.dtype == torch.float16 for t in weights.values())  # shipped in half precision


def test_resume_refuses_another_recipe(tmp_path):
    p = get_train_preset("vae", "tiny")
    train_vae(p, tmp_path, device=CPU, steps=1, progress=False)
    with pytest.raises(ValueError, match="another recipe"):
        train_vae(replace(p, lr=0.5), tmp_path, device=CPU, steps=1, progress=False)


@pytest.fixture(scope="module")
def tiny_vae_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("vae")
    train_vae(get_train_preset("vae", "tiny"), out, device=CPU, eval_clips=2, progress=False)
    return out / "model"


def test_dit_training_builds_the_cache_once_and_learns(tiny_vae_dir, tmp_path):
    p = replace(get_train_preset("dit", "tiny"), steps=30, checkpoint_every=30, lr=3e-3, warmup=5)
    trainer = train_dit(
        p, tmp_path / "run", vae=tiny_vae_dir, cache=tmp_path / "cache", device=CPU, progress=False
    )
    losses = [h["loss"] for h in trainer.history]
    assert np.mean(losses[-10:]) < np.mean(losses[:10])  # the loss falls
    files = sorted((tmp_path / "cache").glob("*.pt"))
    assert sum(len(torch.load(f, weights_only=False)["latents"]) for f in files) >= p.cache_videos
    stamps = [f.stat().st_mtime_ns for f in files]
    train_dit(
        p, tmp_path / "run", vae=tiny_vae_dir, cache=tmp_path / "cache", device=CPU, progress=False
    )
    assert [f.stat().st_mtime_ns for f in files] == stamps  # cache reused, not rebuilt
    model = DiT.from_pretrained(tmp_path / "run" / "model")
    meta = json.loads((tmp_path / "run" / "model" / "config.json").read_text())["meta"]
    assert meta["text_encoder"] == "all-MiniLM-L6-v2" and model.num_params() == meta["parameters"]


def test_cli_train_help_lists_presets_and_needs_a_vae_for_dit(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert "vae world" in text and "dit world" in text and "tenku train world" in text
    with pytest.raises(SystemExit):
        main(["train", "vae", "--help"])
    assert "--stop-at" in capsys.readouterr().out
    assert main(["train", "dit", "--preset", "tiny", "--out", str(tmp_path)]) == 2
    assert "vae: `tenku train dit` needs --vae" in capsys.readouterr().err


def test_loss_plot_is_a_png(tmp_path):
    history = [{"step": i, "loss": 1.0 / (i + 1), "lr": 1e-3} for i in range(30)]
    plot_history(history, tmp_path / "loss.png", "test")
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"
