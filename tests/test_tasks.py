"""Every conditioned task on one mechanism, with tiny random components (64x64, 2 steps)."""

import itertools
import json

import numpy as np
import pytest

from tenku.cli import main
from tenku.io import read_video, write_image, write_video
from tenku.pipelines import GenerationRequest, tasks
from tenku.pipelines.conditioning import (
    Given,
    Timeline,
    fit_frames,
    latent_mask,
    paste,
    plan_windows,
    resample_rate,
    weight_curve,
)
from tenku.pipelines.request import Blend, Card, Keyframe, Remix

SIZE = {"width": 64, "height": 64, "steps": 2, "seed": 3}


# ----------------------------------------------------------------------------- policies


def test_fit_covers_then_crops_the_centre():
    wide = np.zeros((1, 20, 40, 3), np.uint8)
    wide[:, :, 10:30] = 255  # the centre 20 columns are white
    out = fit_frames(wide, 16, 16)
    assert out.shape == (1, 16, 16, 3)
    assert out.min() >= 240  # the kept square is the white centre; the black sides were cut


def test_rate_takes_the_nearest_frame():
    frames = np.arange(9)[:, None, None, None].astype(np.uint8) * np.ones((1, 2, 2, 3), np.uint8)
    up = resample_rate(frames, 8, 16)[:, 0, 0, 0]
    assert len(up) == 17 and up[0] == 0 and up[-1] == 8
    assert np.all(np.diff(up) >= 0)  # in order, each source frame held about twice
    assert set(up.tolist()) == set(range(9))  # every source frame is kept
    down = resample_rate(frames, 8, 4)[:, 0, 0, 0]
    assert down.tolist() == [0, 2, 4, 6, 8]


def test_windows_are_4k_plus_1_and_overlap_by_the_tail():
    spans = plan_windows(97, 33, 5)
    assert spans[0] == (0, 33) and spans[-1][1] == 97
    for (_, end), (start, stop) in itertools.pairwise(spans):
        assert end - start == 5 and (stop - start - 1) % 4 == 0
    assert plan_windows(17, 33, 5) == [(0, 17)]
    with pytest.raises(ValueError, match="window"):
        plan_windows(17, 32, 5)


def test_latent_mask_and_hold_fill():
    frame = np.full((1, 4, 4, 3), 200, np.uint8)
    timeline = Timeline([Given(frame, 6)])  # frame 6 lies in latent frame 2 (frames 5..8)
    canvas, known = timeline.window(0, 9)
    assert latent_mask(known).tolist() == [False, False, True]
    assert canvas is not None and (canvas == 200).all()  # every frame holds the given one
    assert Timeline().window(0, 9)[0] is None


def test_paste_is_exact_on_given_frames_and_carries_the_decoder_error_into_the_seam():
    given = np.full((1, 2, 2, 3), 100, np.uint8)
    decoded = np.full((12, 2, 2, 3), 90, np.uint8)  # the decoder is 10 levels off everywhere
    canvas, known = Timeline([Given(given, 0)]).window(0, len(decoded))
    out = paste(decoded, canvas, known, fade=8)
    assert (out[0] == 100).all()
    steps = [int(out[i, 0, 0, 0]) for i in range(12)]
    assert steps[:3] == [100, 99, 98] and steps[8:] == [90] * 4  # fades out over 8 frames


def test_weight_curve_reads_evenly_spaced_weights():
    np.testing.assert_allclose(weight_curve((0.0, 1.0), np.array([0, 0.25, 1])), [0, 0.25, 1])
    np.testing.assert_allclose(weight_curve((0.3,), np.array([0, 1])), [0.3, 0.3])


# ----------------------------------------------------------------------------- requests


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"keyframes": [Keyframe("a.png", at=5.0)]}, r"keyframes\[0\].at: 5.0 is outside"),
        ({"keyframes": [{"path": ""}]}, r"keyframes\[0\].path: must be a file path"),
        ({"remix": Remix("a.mp4", 1.5)}, r"remix.strength: 1.5 is outside \[0.0, 1.0\]"),
        ({"blend": Blend("b", videos=("a.mp4",))}, "blend.videos: give no video or two"),
        ({"blend": Blend("b", curve=(0, 2))}, r"blend.curve\[1\]: 2 is outside"),
        ({"cards": [Card(9.0, "x")]}, r"cards\[0\].at: 9.0 is outside"),
        ({"cards": [Card(0, "x")] * 33}, "cards: at most 32"),
        ({"remix": Remix("a.mp4"), "cards": [Card(0, "x")]}, "cards: cannot be combined"),
        ({"seconds": 0, "loop": True}, "seconds: 0 .an image. cannot loop"),
    ],
)
def test_bad_task_fields_name_the_field(fields, message):
    with pytest.raises(ValueError, match=message):
        GenerationRequest("a ball", seconds=fields.pop("seconds", 4.0), **fields)


def test_requests_round_trip_through_json_and_name_their_task():
    request = GenerationRequest(
        "x",
        keyframes=[Keyframe("a.png"), Keyframe("b.png", at=4.0)],
        cards=(),
        blend=None,
    )
    assert request.task == "first-last-frame"
    again = GenerationRequest(**json.loads(json.dumps(request.to_dict())))
    assert again == request
    assert GenerationRequest("x", seconds=0).task == "text-to-image"
    assert GenerationRequest("x", remix={"path": "a.mp4"}).task == "video-to-video"


# ----------------------------------------------------------------------------- pipeline


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 2-second 64x64 source clip (a square moving right) and its frames as read back."""
    frames = np.full((17, 64, 64, 3), 235, np.uint8)
    for t in range(17):
        frames[t, 24:40, 2 * t : 2 * t + 16] = (230, 40, 40)
    path = tmp_path_factory.mktemp("src") / "clip.mp4"
    write_video(path, frames, 8.0)
    return str(path), read_video(path).frames


def one(pipe, request):
    (video,) = pipe.generate(request)
    return video.frames


def test_image_to_video_starts_on_the_image(pipe, tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    write_image(tmp_path / "first.png", image)
    out = one(pipe, tasks.image_to_video("a ball", str(tmp_path / "first.png"), seconds=1, **SIZE))
    assert out.shape == (9, 64, 64, 3)
    np.testing.assert_array_equal(out[0], image)
    plain = one(pipe, GenerationRequest("a ball", seconds=1, **SIZE))
    assert not np.array_equal(out[1:], plain[1:])  # the image conditions what follows


def test_extend_keeps_the_source_and_adds_frames(pipe, clip):
    path, source = clip
    out = one(pipe, tasks.extend("a ball", path, 1.0, **SIZE))
    assert out.shape == (25, 64, 64, 3)
    np.testing.assert_array_equal(out[:17], source)
    back = one(pipe, tasks.extend("a ball", path, 1.0, backward=True, **SIZE))
    np.testing.assert_array_equal(back[8:], source)


def test_connect_fill_and_recut_keep_every_given_frame(pipe, clip):
    path, source = clip
    joined = one(pipe, tasks.connect("a ball", path, path, gap=1.0, **SIZE))
    assert len(joined) == 41
    np.testing.assert_array_equal(joined[:17], source)
    np.testing.assert_array_equal(joined[24:], source)  # B starts 1 s after A ends
    filled = one(pipe, tasks.fill("a ball", path, 0.5, 1.5, **SIZE))
    np.testing.assert_array_equal(filled[:4], source[:4])
    np.testing.assert_array_equal(filled[12:], source[12:])
    assert not np.array_equal(filled[4:12], source[4:12])
    cut = one(pipe, tasks.recut("a ball", path, [(1.0, 2.0), (0.0, 0.5)], **SIZE))
    np.testing.assert_array_equal(cut[:9], source[8:17])


def test_long_videos_run_in_windows_that_follow_each_other(pipe):
    pipe.defaults = {**pipe.defaults, "window_frames": 9, "overlap_frames": 5}
    try:
        request = GenerationRequest("a ball", seconds=3, **SIZE)
        out = one(pipe, request)
        assert out.shape == (25, 64, 64, 3)
        np.testing.assert_array_equal(out, one(pipe, request))  # seeded, window by window
        first = one(pipe, GenerationRequest("a ball", seconds=1, **SIZE))
        np.testing.assert_array_equal(out[:9], first)  # the first window is the 1 s video
    finally:
        pipe.defaults = {**pipe.defaults, "window_frames": 33, "overlap_frames": 5}


def test_loop_regenerates_only_its_last_second(pipe):
    plain = one(pipe, GenerationRequest("a ball", seconds=3, **SIZE))
    looped = one(pipe, tasks.loop("a ball", seconds=3, **SIZE))
    assert looped.shape == plain.shape
    np.testing.assert_array_equal(looped[:17], plain[:17])
    assert not np.array_equal(looped[17:], plain[17:])
    with pytest.raises(ValueError, match=r"seconds: a loop needs at least 2 s \(17 frames\)"):
        tasks.loop("a ball", seconds=1, **SIZE)


def test_remix_strength_runs_from_the_source_to_text_to_video(pipe, clip):
    path, source = clip
    kept = one(pipe, tasks.remix("a ball", path, strength=0.0, **SIZE))
    latents = pipe.encode_frames(source)
    np.testing.assert_array_equal(kept, pipe.decode(latents)[0])  # the source's round trip
    fresh = one(pipe, tasks.remix("a ball", path, strength=1.0, **SIZE))
    np.testing.assert_array_equal(fresh, one(pipe, GenerationRequest("a ball", seconds=2, **SIZE)))
    seen = []
    request = tasks.remix("a blue ball", path, strength=0.5, **{**SIZE, "steps": 8})
    (half,) = pipe.generate(request, callback=lambda done, total: seen.append((done, total)))
    assert not np.array_equal(half.frames, kept) and not np.array_equal(half.frames, fresh)
    assert 0 < seen[-1][0] == seen[-1][1] < 8  # the progress bar ends full, with fewer steps


def test_blend_weights_pick_each_prompt_at_the_ends(pipe):
    a = one(pipe, GenerationRequest("a red ball", seconds=1, **SIZE))
    b = one(pipe, GenerationRequest("a blue cube", seconds=1, **SIZE))
    only_a = one(pipe, tasks.blend("a red ball", "a blue cube", curve=(0.0,), seconds=1, **SIZE))
    only_b = one(pipe, tasks.blend("a red ball", "a blue cube", curve=(1.0,), seconds=1, **SIZE))
    np.testing.assert_array_equal(only_a, a)
    np.testing.assert_array_equal(only_b, b)
    mixed = one(pipe, tasks.blend("a red ball", "a blue cube", seconds=1, **SIZE))
    assert not np.array_equal(mixed, a) and not np.array_equal(mixed, b)


def test_storyboard_follows_its_cards(pipe):
    single = one(pipe, tasks.storyboard([(0.0, "a red ball")], seconds=2, **SIZE))
    np.testing.assert_array_equal(
        single, one(pipe, GenerationRequest("a red ball", seconds=2, **SIZE))
    )
    two = one(
        pipe, tasks.storyboard([(0.0, "a red ball"), (1.0, "a blue cube")], seconds=2, **SIZE)
    )
    change = np.abs(two.astype(int) - single).mean(axis=(1, 2, 3))
    # the second card's prompt drives the latent frames from 1 s on; the frames before it
    # change only through attention to the later ones
    assert change[9:].mean() > 3 * change[:5].mean() and change[9:].mean() > 0


def test_image_is_one_frame(pipe, tmp_path):
    out = one(pipe, tasks.image("a green triangle", **SIZE))
    assert out.shape == (1, 64, 64, 3)
    assert main(["image", "a cube", "-o", str(tmp_path / "x.mp4"), "--size", "64x64"]) == 2


def test_cli_task_writes_a_video_whose_sidecar_regenerates_it(model_dir, clip, tmp_path):
    path, _ = clip
    out = tmp_path / "ext.mp4"
    args = ["extend", "a ball", path, "--by", "1", "--steps", "2", "--seed", "4", "-o", str(out)]
    assert main([*args, "--model", str(model_dir), "--quiet"]) == 0
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["request"]["keyframes"][0]["path"] == path and sidecar["frames"] == 25
    again = tmp_path / "again.mp4"
    replay = ["generate", "--from-json", str(out.with_suffix(".json")), "-o", str(again)]
    assert main([*replay, "--model", str(model_dir), "--quiet"]) == 0
    np.testing.assert_array_equal(read_video(again).frames, read_video(out).frames)


def test_a_sidecar_regenerates_the_same_video_on_another_thread_count(model_dir, clip, tmp_path):
    """Same request, same seed -> same video, whatever ``--threads`` each run had."""
    import torch

    path, _ = clip
    out, again = tmp_path / "one.mp4", tmp_path / "two.mp4"
    threads = torch.get_num_threads()
    try:
        args = ["extend", "a ball", path, "--by", "1", "--steps", "2", "--seed", "4"]
        assert main([*args, "--threads", "1", "-o", str(out), "--model", str(model_dir)]) == 0
        replay = ["generate", "--from-json", str(out.with_suffix(".json")), "--threads", "2"]
        assert main([*replay, "-o", str(again), "--model", str(model_dir), "--quiet"]) == 0
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(read_video(again).frames, read_video(out).frames)


def test_the_same_frames_encode_to_the_same_bytes_every_time(pipe, clip, tmp_path):
    """libx264 with B-frames gave other bytes for the same frames on about one run in ten (a
    tiny-model clip, one thread); tenku encodes without them (``tenku.io.video``)."""
    from tenku.safety.invisible import embed
    from tenku.safety.visible import VisibleOptions, apply_visible

    path, _ = clip
    (video,) = pipe.generate(tasks.extend("a ball", path, 1.0, **{**SIZE, "seed": 4}))
    frames = embed(apply_visible(video.frames, 8.0, VisibleOptions()), 1234)
    files = [write_video(tmp_path / f"{i}.mp4", frames, 8.0).read_bytes() for i in range(60)]
    assert all(f == files[0] for f in files)


def test_chained_outputs_start_from_the_clean_original(model_dir, tmp_path, monkeypatch, capsys):
    """i2v from a tenku still and extend of a tenku clip start from the unmarked originals in
    the local library: one mark per output, the kept frames exactly the model's own; a tenku
    output changed since it was written is used as it is, and the CLI says its marks will show."""
    import tenku.safety.publish

    monkeypatch.setenv("TENKU_HOME", str(tmp_path / "home"))
    made: dict[str, np.ndarray] = {}  # file name -> the frames published there, before marking
    publish = tenku.safety.publish.publish

    def keep(frames, fps, path, **options):
        made[path.name] = frames.copy()
        return publish(frames, fps, path, **options)

    monkeypatch.setattr(tenku.safety.publish, "publish", keep)
    run = ["--steps", "2", "--model", str(model_dir), "--quiet"]
    still, up, longer = tmp_path / "still.png", tmp_path / "up.mp4", tmp_path / "longer.mp4"
    assert main(["image", "a ball", "--size", "64x64", "--seed", "1", "-o", str(still), *run]) == 0
    assert (read_video(still).frames != made["still.png"]).any()  # published with its marks
    i2v = ["i2v", "a ball", str(still), "--seconds", "1", "--size", "64x64", "--seed", "2"]
    assert main([*i2v, "-o", str(up), *run]) == 0
    np.testing.assert_array_equal(made["up.mp4"][0], made["still.png"][0])  # no second mark
    assert (
        main(["extend", "a ball", str(up), "--by", "1", "--seed", "3", "-o", str(longer), *run])
        == 0
    )
    np.testing.assert_array_equal(made["longer.mp4"][:9], made["up.mp4"])  # kept exactly
    assert capsys.readouterr().err.count("starting from its clean original") == 2
    sidecar = json.loads(longer.with_suffix(".json").read_text())
    assert sidecar["request"]["keyframes"][0]["path"].startswith(str(tmp_path / "home"))
    assert sidecar["provenance"]["c2pa"]["ingredients"] == ["up.mp4"]  # the file as given
    again = tmp_path / "again.mp4"
    assert (
        main(["generate", "--from-json", str(longer.with_suffix(".json")), "-o", str(again), *run])
        == 0
    )
    np.testing.assert_array_equal(read_video(again).frames, read_video(longer).frames)
    data = bytearray(up.read_bytes())
    data[data.index(b"c2pa") + 40] ^= 0x01  # changed since tenku wrote it
    (tmp_path / "changed.mp4").write_bytes(data)
    changed = ["extend", "a ball", str(tmp_path / "changed.mp4"), "--by", "1", "--seed", "3"]
    assert main([*changed, "-o", str(tmp_path / "x.mp4"), *run]) == 0
    assert "its marks as well as its own" in capsys.readouterr().err
    request = json.loads((tmp_path / "x.json").read_text())["request"]
    assert request["keyframes"][0]["path"] == str(tmp_path / "changed.mp4")


def test_cli_task_bad_input_names_the_field_and_writes_nothing(clip, tmp_path, capsys):
    path, _ = clip
    out = tmp_path / "x.mp4"
    assert main(["extend", "a ball", str(tmp_path / "missing.mp4"), "-o", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["remix", "a ball", path, "--strength", "2", "-o", str(out)]) == 2
    assert "remix.strength: 2.0 is outside [0.0, 1.0]" in capsys.readouterr().err
    assert main(["fill", "a ball", path, "--span", "1.5:0.5", "-o", str(out)]) == 2
    assert "start, end" in capsys.readouterr().err
    assert main(["blend", "a red ball", "a decapitation", "-o", str(out)]) == 2
    assert "blend.prompt: refused (graphic violence)" in capsys.readouterr().err
    card = ["--card", "0", "a red ball", "--card", "2", "a decapitation"]
    assert main(["storyboard", *card, "-o", str(out)]) == 2
    assert "cards[1].prompt: refused (graphic violence)" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
