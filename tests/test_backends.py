"""Backends: the native model and tiny random diffusers pipelines (Wan, LTX-Video, CogVideoX)
built offline from configs, through `load_backend` and `tenku generate --model PATH` on CPU.

The same folders behind `POST /v1/videos`: tests/test_serve_backends.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tenku.cli import main
from tenku.io import read_video, write_image, write_video
from tenku.pipelines import GenerationRequest, TenkuPipeline
from tenku.pipelines.backend import BackendOptions, NativeBackend, snap
from tenku.pipelines.diffusers_backend import fit_image, fit_video
from tenku.pipelines.registry import installed_models, load_backend, resolve_model
from tenku.pipelines.request import Keyframe, Remix, frames_for
from tenku.pipelines.tiny import save_tiny

PROMPT = "a red ball bounces on a white background"
KINDS = ("wan", "wan-i2v", "ltx", "cogvideox", "cogvideox-i2v")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Each tiny pipeline saved once, as ``save_pretrained`` lays out a real one."""
    root = tmp_path_factory.mktemp("models")
    return {kind: save_tiny(kind, root / kind) for kind in KINDS}


@pytest.fixture(scope="module")
def backends(folders):
    return {kind: load_backend(path) for kind, path in folders.items()}


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Two images (not the output's size or aspect) and a 12-frame 8 fps clip."""
    root = tmp_path_factory.mktemp("media")
    rng = np.random.default_rng(0)
    for name in ("first.png", "last.png"):
        write_image(root / name, rng.integers(0, 256, (80, 100, 3), dtype=np.uint8))
    write_video(root / "clip.mp4", rng.integers(0, 256, (12, 48, 80, 3), dtype=np.uint8), 8.0)
    return {
        "first": str(root / "first.png"),
        "last": str(root / "last.png"),
        "clip": str(root / "clip.mp4"),
    }


def request(**fields) -> GenerationRequest:
    return GenerationRequest(
        **{
            "prompt": PROMPT,
            "width": 64,
            "height": 64,
            "seconds": 0.25,
            "steps": 2,
            "seed": 3,
            **fields,
        }
    )


def conditioned(task: str, media: dict[str, str]) -> dict:
    first, last = Keyframe(media["first"]), Keyframe(media["last"], at=0.25)
    return {
        "text-to-video": {},
        "text-to-image": {"seconds": 0.0},
        "image-to-video": {"keyframes": [first]},
        "first-last-frame": {"keyframes": [first, last]},
        "keyframes": {"keyframes": [Keyframe(media["first"], at=0.125)]},
        "video-to-video": {"remix": Remix(media["clip"], strength=0.5)},
    }[task]


@pytest.mark.parametrize(
    ("kind", "family", "tasks"),
    [
        ("wan", "wan", {"text-to-video", "text-to-image", "video-to-video"}),
        ("wan-i2v", "wan", {"image-to-video", "first-last-frame"}),
        (
            "ltx",
            "ltx",
            {"text-to-video", "text-to-image", "image-to-video", "first-last-frame", "keyframes"},
        ),
        ("cogvideox", "cogvideox", {"text-to-video", "video-to-video"}),
        ("cogvideox-i2v", "cogvideox", {"image-to-video"}),
    ],
)
def test_family_and_tasks_come_from_the_folder(backends, folders, kind, family, tasks):
    backend = backends[kind]
    assert backend.family == family and backend.tasks == tasks
    assert backend.name == folders[kind].name
    assert backend.describe()["tasks"] and backend.defaults["sampler"] is None


@pytest.mark.parametrize(
    ("kind", "task", "frames", "fps"),
    [
        ("wan", "text-to-video", 5, 16.0),  # 4k + 1 at 16 fps
        ("wan", "text-to-image", 1, 16.0),
        ("wan", "video-to-video", 5, 16.0),
        ("wan-i2v", "image-to-video", 5, 16.0),
        ("wan-i2v", "first-last-frame", 5, 16.0),
        ("ltx", "text-to-video", 9, 24.0),  # 8k + 1 at 24 fps
        ("ltx", "image-to-video", 9, 24.0),
        ("ltx", "first-last-frame", 9, 24.0),
        ("ltx", "keyframes", 9, 24.0),
        ("cogvideox", "text-to-video", 9, 8.0),  # 8k + 1 at 8 fps
        ("cogvideox", "video-to-video", 9, 8.0),
        ("cogvideox-i2v", "image-to-video", 9, 8.0),
    ],
)
def test_every_task_gives_frames_of_the_backends_shape(backends, media, kind, task, frames, fps):
    req = request(**conditioned(task, media))
    assert req.task == task
    steps = []
    (video,) = backends[kind].generate(req, callback=lambda done, total: steps.append(total))
    assert video.frames.shape == (frames, 64, 64, 3) and video.frames.dtype == np.uint8
    assert video.fps == fps and video.request.fps == fps
    assert video.request.seed == 3 and video.request.steps == 2
    assert video.request.guidance == backends[kind].defaults["guidance"]
    assert steps and steps[-1] == 2
    sidecar = video.sidecar()
    assert sidecar["frames"] == frames and sidecar["model"] == kind
    assert GenerationRequest(**sidecar["request"]) == video.request  # the sidecar regenerates


@pytest.mark.parametrize(
    ("kind", "task"),
    [("wan", "text-to-video"), ("ltx", "keyframes"), ("cogvideox", "video-to-video")],
)
def test_a_seed_gives_the_same_video_and_another_seed_another(backends, media, kind, task):
    backend, fields = backends[kind], conditioned(task, media)
    (a,) = backend.generate(request(**fields))
    (b,) = backend.generate(request(**fields))
    (c,) = backend.generate(request(**fields, seed=4))
    np.testing.assert_array_equal(a.frames, b.frames)
    assert np.abs(a.frames.astype(int) - c.frames.astype(int)).mean() > 0.5


def test_variations_are_consecutive_seeds(backends):
    backend = backends["cogvideox"]
    videos = backend.generate(request(variations=2, seed=10))
    (alone,) = backend.generate(request(seed=11))
    assert [v.request.seed for v in videos] == [10, 11]
    assert all(v.request.variations == 1 for v in videos)
    np.testing.assert_array_equal(videos[1].frames, alone.frames)


def test_unsupported_task_names_the_backend_and_the_task(backends, media):
    with pytest.raises(
        ValueError,
        match=(
            r"model: cogvideox \(cogvideox\) cannot do image-to-video; "
            r"it supports text-to-video, video-to-video$"
        ),
    ):
        backends["cogvideox"].generate(request(keyframes=[Keyframe(media["first"])]))
    with pytest.raises(ValueError, match=r"wan-i2v .* cannot do text-to-video"):
        backends["wan-i2v"].generate(request())
    with pytest.raises(ValueError, match=r"ltx .* cannot do loop"):
        backends["ltx"].plan(request(loop=True, seconds=2))


def test_requests_map_onto_each_backends_rules(backends):
    ltx, cog = backends["ltx"], backends["cogvideox"]
    plan = ltx.plan(request(width=80, height=112, seconds=1.0, seed=None, steps=None))
    assert (plan.width, plan.height, plan.frames, plan.fps) == (96, 128, 25, 24.0)
    assert plan.request.seed is not None and plan.request.steps == 50
    assert (plan.request.width, plan.request.height) == (96, 128)  # recorded as generated
    with pytest.raises(ValueError, match=r"seconds: cogvideox makes at most 49 frames \(6 s"):
        cog.plan(request(seconds=10.0))
    with pytest.raises(ValueError, match="sampler: wan samples with its own scheduler"):
        backends["wan"].plan(request(sampler="euler"))
    with pytest.raises(ValueError, match=r"remix.strength: 0.2 leaves no sampler step of 2"):
        cog.plan(request(remix=Remix("clip.mp4", strength=0.2)))
    assert frames_for(5.0, 16.0, 4) == 81 and frames_for(0.0, 24.0, 8) == 1
    assert frames_for(6.0, 8.0, 8) == 49 and snap(80, 32) == 96 and snap(48, 32) == 64


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"offload": "model"}, "offload: model offload needs a CUDA device"),
        ({"offload": "sequential"}, "offload: sequential offload needs a CUDA device"),
        ({"compile": True}, "compile: torch.compile of the transformer needs a CUDA device"),
        ({"dtype": "float16"}, "dtype: float16 needs a CUDA device"),
        ({"attention": "flash"}, "attention: flash needs a CUDA device"),
        ({"dtype": "float64"}, "dtype: 'float64' is not one of"),
        ({"offload": "disk"}, "offload: 'disk' is not one of"),
    ],
)
def test_gpu_options_are_refused_on_cpu_naming_the_option(options, message):
    with pytest.raises(ValueError, match=message):
        BackendOptions(**options).check("cpu")


def test_cpu_options_apply(folders):
    backend = load_backend(
        folders["cogvideox"], vae_tiling=True, vae_slicing=True, attention="math", dtype="bfloat16"
    )
    assert backend.pipe.vae.use_tiling and backend.pipe.vae.use_slicing
    assert backend.pipe.transformer.dtype == torch.bfloat16
    (video,) = backend.generate(request())
    assert video.frames.shape == (9, 64, 64, 3)


def test_sources_are_fitted_to_the_plan(backends, media):
    image = fit_image(np.zeros((80, 100, 3), np.uint8), 64, 48)  # cover, then centre-crop
    assert image.size == (64, 48)
    plan = backends["wan"].plan(request(seconds=1.0, remix=Remix(media["clip"])))
    frames = fit_video(media["clip"], plan)  # 12 frames at 8 fps -> 17 at 16 fps, last held
    assert len(frames) == plan.frames == 17 and frames[0].size == (64, 64)
    assert np.array_equal(np.asarray(frames[-1]), np.asarray(frames[-2]))


def test_native_backend_is_a_thin_adapter_over_tenku_pipeline():
    backend = load_backend(None)
    assert isinstance(backend, NativeBackend) and backend.family == "native"
    assert backend.plan(request(loop=True, seconds=2)).request.loop  # every task passes
    req = request(seconds=0.5, width=64, height=64)
    (ours,) = backend.generate(req)
    (direct,) = backend.pipe.generate(req)
    assert isinstance(backend.pipe, TenkuPipeline)
    np.testing.assert_array_equal(ours.frames, direct.frames)
    assert ours.request == direct.request and ours.frames.shape == (5, 64, 64, 3)
    with pytest.raises(ValueError, match="vae-tiling: applies to diffusers models"):
        NativeBackend(backend.pipe, options=BackendOptions(vae_tiling=True))


def test_models_are_found_by_name(folders, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TENKU_MODELS", str(folders["ltx"].parent))
    found = {m.name: m for m in installed_models()}
    assert found["default"].kind == "native" and found["ltx"].family == "ltx"
    assert found["wan-i2v"].family == "wan" and found["ltx"].size_bytes > 0
    assert resolve_model("cogvideox") == folders["cogvideox"]
    assert main(["models", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {m["name"] for m in listed["models"]} >= {"default", *KINDS}
    assert main(["generate", PROMPT, "--model", "nonesuch", "-o", str(tmp_path / "x.mp4")]) == 2
    assert "model: nonesuch is neither a folder nor an installed model" in capsys.readouterr().err


def test_generate_command_runs_a_diffusers_folder_end_to_end(folders, backends, tmp_path, capsys):
    out, again, other = (tmp_path / f"{n}.mp4" for n in ("ball", "again", "other"))
    common = ["--model", str(folders["wan"]), "--quiet"]
    argv = [PROMPT, "--seconds", "0.25", "--size", "64x64", "--steps", "2"]
    assert main(["generate", *argv, "--seed", "9", *common, "-o", str(out)]) == 0
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["model"] == "wan" and sidecar["frames"] == 5 and sidecar["fps"] == 16.0
    assert sidecar["request"]["seed"] == 9 and sidecar["request"]["guidance"] == 5.0
    recorded = str(out.with_suffix(".json"))
    assert main(["generate", "--from-json", recorded, *common, "-o", str(again)]) == 0
    assert json.loads(again.with_suffix(".json").read_text())["request"] == sidecar["request"]
    assert main(["generate", *argv, "--seed", "10", *common, "-o", str(other)]) == 0
    first, repeat, second = (read_video(p) for p in (out, again, other))
    assert first.frames.shape == (5, 64, 64, 3) and first.fps == 16.0
    # Each file carries its own publishing marks (video id), so a repeat is compared with
    # another seed's video rather than for equality; the frames themselves are equal.
    assert diff(first.frames, repeat.frames) < 0.5 * diff(first.frames, second.frames)
    (ref,) = backends["wan"].generate(GenerationRequest(**sidecar["request"]))
    (direct,) = backends["wan"].generate(request(seconds=0.25, seed=9))
    np.testing.assert_array_equal(ref.frames, direct.frames)
    assert main(["generate", PROMPT, *common, "--offload", "model", "-o", str(out)]) == 2
    assert "offload: model offload needs a CUDA device" in capsys.readouterr().err


def diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(int) - b.astype(int)).mean())
