"""Requests, the text-to-video pipeline and `tenku generate`, with tiny random components."""

import json

import numpy as np
import pytest
import torch

from tenku.cli import main
from tenku.io import read_video
from tenku.pipelines import GenerationRequest, TenkuPipeline, frames_for, size_for


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("prompt", "  ", "prompt: must be a non-empty string"),
        ("seconds", 121.0, r"seconds: 121.0 is outside \[0.0, 120.0\]"),
        ("width", 100, "width: 100 must be a multiple of 16"),
        ("height", 2048, r"height: 2048 is outside \[64, 1280\]"),
        ("steps", 0, r"steps: 0 is outside \[1, 200\]"),
        ("guidance", float("nan"), "guidance: must be a finite number"),
        ("variations", 9, r"variations: 9 is outside \[1, 8\]"),
        ("sampler", "ddim", "sampler: 'ddim' is not one of"),
        ("seed", -1, "seed: -1 is outside"),
    ],
)
def test_bad_requests_name_the_field_and_limit(field, value, message):
    args = {"prompt": "a red ball", field: value}
    with pytest.raises(ValueError, match=message):
        GenerationRequest(**args)


def test_frames_and_sizes():
    assert frames_for(4, 8) == 33 and frames_for(2, 8) == 17 and frames_for(8, 8) == 65
    assert frames_for(0.5, 8) == 5  # never fewer than 5 frames
    assert size_for("1:1", 128) == (128, 128)
    assert size_for("16:9", 128) == (224, 128)
    assert size_for("9:16", 128) == (128, 224)
    with pytest.raises(ValueError, match="aspect"):
        size_for("4:3", 128)
    with pytest.raises(ValueError, match="resolution"):
        size_for("1:1", 100)


REQUEST = GenerationRequest("a red ball bounces", seconds=1, width=64, height=64, steps=3, seed=5)


def test_seeded_generation_is_reproducible_and_shaped(pipe):
    (a,) = pipe.generate(REQUEST)
    (b,) = pipe.generate(REQUEST)
    assert a.frames.shape == (9, 64, 64, 3) and a.frames.dtype == np.uint8
    np.testing.assert_array_equal(a.frames, b.frames)
    assert a.request.steps == 3 and a.request.guidance == pipe.defaults["guidance"]
    assert a.sidecar()["request"]["seed"] == 5 and a.model == "tiny-random"


def test_variations_have_distinct_seeds_and_each_regenerates_alone(pipe):
    videos = pipe.generate(GenerationRequest(**{**REQUEST.to_dict(), "variations": 3}))
    assert [v.request.seed for v in videos] == [5, 6, 7]
    assert not np.array_equal(videos[0].frames, videos[1].frames)
    (alone,) = pipe.generate(videos[2].request)
    np.testing.assert_array_equal(alone.frames, videos[2].frames)


def test_prompt_and_guidance_change_the_video(pipe):
    (a,) = pipe.generate(REQUEST)
    (b,) = pipe.generate(GenerationRequest(**{**REQUEST.to_dict(), "prompt": "a blue cube"}))
    (c,) = pipe.generate(GenerationRequest(**{**REQUEST.to_dict(), "guidance": 1.0}))
    assert not np.array_equal(a.frames, b.frames) and not np.array_equal(a.frames, c.frames)


def test_context_frames_are_kept_exactly(pipe):
    cond, uncond = pipe.encode_prompt(["a red ball"])
    noise = pipe.initial_noise(REQUEST, [1])
    context = torch.randn_like(noise)
    mask = torch.zeros(1, 1, noise.shape[2], 1, 1)
    mask[:, :, 0] = 1
    mask = mask.expand(1, 1, *noise.shape[2:])
    out = pipe.denoise(
        noise,
        cond,
        uncond,
        steps=3,
        guidance=2.0,
        sampler="euler",
        context=context,
        context_mask=mask,
    )
    torch.testing.assert_close(out[:, :, 0], context[:, :, 0], rtol=0, atol=0)
    assert not torch.equal(out[:, :, 1:], context[:, :, 1:])


def test_progress_callback_counts_every_step(pipe):
    seen = []
    pipe.generate(
        GenerationRequest(**{**REQUEST.to_dict(), "variations": 2}),
        callback=lambda d, t: seen.append((d, t)),
    )
    assert seen == [(i, 6) for i in range(1, 7)]


def test_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no pipeline\.json"):
        TenkuPipeline.from_pretrained(tmp_path)


def test_cli_generate_writes_videos_and_sidecars_that_regenerate(model_dir, tmp_path):
    out = tmp_path / "clips" / "ball.mp4"
    args = ["generate", "a red ball bounces", "-o", str(out), "--model", str(model_dir)]
    opts = ["--seconds", "1", "--aspect", "16:9", "--resolution", "64", "--steps", "2", "--quiet"]
    assert main([*args, *opts, "--variations", "2", "--seed", "3"]) == 0
    paths = [tmp_path / "clips" / f"ball-{i}.mp4" for i in (1, 2)]
    video = read_video(paths[1])
    assert video.frames.shape == (9, 64, 112, 3) and video.fps == 8
    side = json.loads(paths[1].with_suffix(".json").read_text())
    assert side["request"]["seed"] == 4 and side["request"]["width"] == 112
    again = tmp_path / "again.mp4"
    cmd = ["generate", "--from-json", str(paths[1].with_suffix(".json")), "-o", str(again)]
    assert main([*cmd, "--model", str(model_dir), "--quiet"]) == 0
    np.testing.assert_array_equal(read_video(again).frames, video.frames)


def test_cli_generate_bad_input_writes_nothing(model_dir, tmp_path, capsys):
    out = tmp_path / "x.mp4"
    assert main(["generate", "a ball", "-o", str(out), "--seconds", "200"]) == 2
    assert "seconds: 200.0 is outside [0.0, 120.0]" in capsys.readouterr().err
    assert main(["generate", "a ball", "-o", str(tmp_path / "x.avi")]) == 2
    assert main(["generate", "-o", str(out)]) == 2
    assert "prompt" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
