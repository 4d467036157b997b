"""Provenance: visible mark, invisible watermark, C2PA signing and `tenku verify`."""

from __future__ import annotations

import hashlib
import json
import stat
import subprocess
import sys

import numpy as np
import pytest
from cryptography import x509

from tenku.cli import main
from tenku.cli.output import save_videos
from tenku.io import read_video, write_image, write_video
from tenku.pipelines.pipeline import GeneratedVideo
from tenku.pipelines.request import GenerationRequest, Keyframe, Remix
from tenku.safety import invisible
from tenku.safety.attacks import change_fps, crop, h264, rescale
from tenku.safety.invisible import MIN_CONFIDENCE, detect, embed, payload_from_id, psnr
from tenku.safety.keys import ENV_ANCHORS, ENV_CERT, ENV_KEY, SigningIdentity, load_identity
from tenku.safety.provenance import (
    TRAINED_ALGORITHMIC_MEDIA,
    Ingredient,
    prompt_sha256,
    verify_file,
)
from tenku.safety.publish import publish, publish_video, request_ingredients
from tenku.safety.verify import verify_video
from tenku.safety.visible import VisibleOptions, apply_visible
from tenku.world.render import render
from tenku.world.sample import SamplerConfig, sample_scene

PROMPT = "a red ball bounces on sand"


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty TENKU_HOME and no operator certificate."""
    monkeypatch.setenv("TENKU_HOME", str(tmp_path / "home"))
    for name in (ENV_CERT, ENV_KEY, ENV_ANCHORS):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "home"


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    """A 128x128, 17-frame sandbox-world clip (uint8 RGB)."""
    cfg = SamplerConfig(width=128, height=128, frames=17, fps=8.0)
    return render(sample_scene(np.random.default_rng(11), cfg))


@pytest.fixture
def signed(home, tmp_path, clip) -> tuple:
    """A published (marked, written, signed) mp4 with one source video as an ingredient."""
    source = write_video(tmp_path / "source.mp4", clip[:5], 8.0)
    out = publish_video(
        clip,
        8.0,
        tmp_path / "out" / "video.mp4",
        video_id="video_test",
        model="tenku-test",
        prompt=PROMPT,
        ingredients=[Ingredient(source, role="remix")],
    )
    return out, source


def test_payload_survives_h264_rescale_crop_and_frame_rate(clip):
    marked = embed(clip, 0xDEADBEEF)
    assert psnr(marked, clip) >= 38.0
    written = h264(marked, 8.0, crf=18)
    attacked = h264(rescale(crop(written, 0.1), 0.5), 8.0, crf=28)
    found = detect(attacked)
    assert found.found and found.payload == 0xDEADBEEF and found.confidence >= MIN_CONFIDENCE
    assert abs(found.scale - 0.5) < 0.03
    assert detect(h264(change_fps(written, 8.0, 24.0), 24.0, crf=28)).payload == 0xDEADBEEF
    assert detect(change_fps(written, 8.0, 4.0)).payload == 0xDEADBEEF


def test_unmarked_video_and_wrong_key_give_no_payload(clip):
    noise = np.random.default_rng(0).integers(0, 256, (9, 96, 96, 3), dtype=np.uint8)
    grey = np.full((5, 64, 64, 3), 128, np.uint8)
    for frames in (clip, h264(clip, 8.0, crf=18), noise, grey):
        found = detect(frames)
        assert not found.found and found.payload is None
    assert not detect(embed(clip, 7), key="someone else's key").found
    assert detect(embed(clip, 7, key="my key"), key="my key").payload == 7


def test_error_correction_fixes_flipped_bits_and_crc_rejects_garbage():
    code = 2.0 * invisible._encode(123456789) - 1.0
    flipped = code.copy()
    flipped[::12] *= -1  # 9 of 108 coded bits wrong
    assert invisible._decode(flipped)[0] == 123456789
    assert invisible._decode(flipped)[1] is not None
    rng = np.random.default_rng(1)
    passed = sum(invisible._decode(rng.standard_normal(108))[1] is not None for _ in range(200))
    assert passed <= 1  # CRC-16: about 1 in 65536 random words pass


def test_embed_rejects_bad_input(clip):
    with pytest.raises(ValueError, match="payload"):
        embed(clip, 2**32)
    with pytest.raises(ValueError, match="payload: 3 bytes"):
        embed(clip, b"abc")
    with pytest.raises(ValueError, match="frames"):
        embed(clip.astype(np.float32), 1)
    with pytest.raises(ValueError, match="strength"):
        embed(clip, 1, strength=0)
    assert embed(clip, b"\x00\x00\x01\x00").shape == clip.shape
    assert payload_from_id("video_a") != payload_from_id("video_b")


def test_visible_mark_moves_between_corners_and_turns_off():
    frames = np.full((33, 128, 128, 3), 120, np.uint8)
    marked = apply_visible(frames, 8.0, VisibleOptions())
    first = np.argwhere(np.any(marked[0] != 120, axis=-1))
    last = np.argwhere(np.any(marked[32] != 120, axis=-1))  # 4 s later: the next corner
    assert first[:, 0].max() < 40 and first[:, 1].max() < 64  # top-left
    assert last[:, 0].max() < 40 and last[:, 1].min() > 64  # top-right
    assert marked.max() >= 190 and marked.min() <= 60  # white text, dark outline (opacity 0.55)
    np.testing.assert_array_equal(apply_visible(frames, 8.0, VisibleOptions(enabled=False)), frames)
    with pytest.raises(ValueError, match="opacity"):
        VisibleOptions(opacity=1.5)
    with pytest.raises(ValueError, match="size"):
        VisibleOptions(size=0.9)


def test_local_ca_and_leaf_are_created_on_first_run(home):
    identity = load_identity()
    keys = home / "keys"
    for name in ("ca.pem", "ca.key", "signer.pem", "signer.key"):
        assert (keys / name).is_file()
    for name in ("ca.key", "signer.key"):
        assert stat.S_IMODE((keys / name).stat().st_mode) == 0o600
    leaf, ca = x509.load_pem_x509_certificates(identity.cert_chain.encode())
    assert leaf.issuer == ca.subject and leaf.subject != leaf.issuer  # not self-signed
    leaf.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert load_identity().cert_chain == identity.cert_chain  # made once, then reused
    assert not list(home.glob(".keys.*"))  # no temporary folders left behind


def test_signed_mp4_verifies_and_one_byte_change_is_tampering(signed, tmp_path, monkeypatch):
    path, _ = signed
    report = verify_file(path)
    assert report.present and report.valid and report.trusted and not report.tampered
    assert report.claim_generator == "tenku"
    assert report.actions[0]["action"] == "c2pa.created"
    assert report.actions[0]["digitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
    assert report.tenku["model"] == "tenku-test"
    assert report.tenku["prompt_sha256"] == hashlib.sha256(PROMPT.encode()).hexdigest()
    assert report.tenku["created"] and report.tenku["video_id"] == "video_test"
    assert report.ingredients == [
        {"title": "source.mp4", "format": "video/mp4", "relationship": "inputTo"}
    ]
    data = path.read_bytes()
    assert PROMPT.encode() not in data
    for box in (b"mdat", b"mvhd", b"c2pa"):  # picture data, movie header, the manifest
        changed = bytearray(data)
        changed[data.index(box) + 40] ^= 0x01
        (tmp_path / "changed.mp4").write_bytes(changed)
        report = verify_file(tmp_path / "changed.mp4")
        assert report.present and report.tampered and not report.valid, box
    assert not verify_file(tmp_path / "source.mp4").present
    (tmp_path / "note.txt").write_text("no c2pa manifest in here")
    assert not verify_file(tmp_path / "note.txt").present  # not a media file: not "tampered"
    monkeypatch.setenv("TENKU_HOME", str(tmp_path / "elsewhere"))  # another machine's CA
    report = verify_file(path)
    assert report.valid and not report.trusted and not report.tampered


def test_signing_failure_leaves_no_file(home, tmp_path, clip):
    bad = SigningIdentity(cert_chain="not a certificate", private_key="nor a key", trust_anchors="")
    target = tmp_path / "out" / "video.mp4"
    with pytest.raises(Exception, match=r"(?i)cert|key|sign|pem"):
        publish(clip[:3], 8.0, target, video_id="v", model="m", prompt="p", identity=bad)
    assert not target.exists() and not list(target.parent.iterdir())


def test_cli_verify_help_json_and_tamper_exit(signed, tmp_path, capsys):
    path, _ = signed
    with pytest.raises(SystemExit) as exit_info:
        main(["verify", "--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    assert "--json" in help_text and "--trust-anchors" in help_text and "tamper" in help_text
    assert main(["verify", "--json", str(path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["verdict"] == "authentic" and report["manifest"]["trusted"]
    assert report["watermark"]["payload"] == f"{payload_from_id('video_test'):08x}"
    assert report["watermark_matches_manifest"] is True
    data = bytearray(path.read_bytes())
    data[data.index(b"mdat") + 100] ^= 0x80
    (tmp_path / "changed.mp4").write_bytes(data)
    assert main(["verify", str(tmp_path / "changed.mp4")]) == 1
    assert "TAMPERED" in capsys.readouterr().out


def test_cli_verify_exit_status_names_the_verdict(signed, tmp_path, monkeypatch, capsys):
    """0 authentic, 1 tampered (above), 2 bad input, 3 watermark only, 4 nothing, 5 untrusted."""
    path, source = signed
    help_text = subprocess.run(
        [sys.executable, "-m", "tenku", "verify", "--help"], capture_output=True, text=True
    ).stdout
    for line in ("0  authentic", "1  tampered", "3  watermark only", "4  nothing", "5  untrusted"):
        assert line in help_text
    assert main(["verify", str(path)]) == 0
    reencoded = write_video(tmp_path / "reencoded.mp4", read_video(path).frames, 8.0)
    assert main(["verify", str(reencoded)]) == 3  # the manifest is gone, the mark stays
    assert "WATERMARK FOUND" in capsys.readouterr().out
    assert main(["verify", str(source)]) == 4  # an ordinary video
    assert "NO PROVENANCE FOUND" in capsys.readouterr().out
    assert main(["verify", str(tmp_path / "missing.mp4")]) == 2
    monkeypatch.setenv("TENKU_HOME", str(tmp_path / "elsewhere"))  # another machine's CA
    assert main(["verify", "--no-watermark", str(path)]) == 5
    assert "UNTRUSTED" in capsys.readouterr().out


def test_save_videos_output_is_marked_and_signed(home, tmp_path, clip):
    source = write_video(tmp_path / "source.mp4", clip[:5], 8.0)
    still = write_image(tmp_path / "still.png", clip[0])
    keyframes = (Keyframe(str(still)), Keyframe(str(source), at=1.0))
    remix = Remix(str(source))  # the same file twice: one ingredient
    request = GenerationRequest(PROMPT, seconds=2.0, seed=3, keyframes=keyframes, remix=remix)
    assert [(i.path.name, i.role) for i in request_ingredients(request)] == [
        ("still.png", "image"),
        ("source.mp4", "clip"),
    ]
    video = GeneratedVideo(frames=clip, fps=8.0, request=request, model="tenku-test")
    mp4, gif = tmp_path / "a.mp4", tmp_path / "b.gif"
    save_videos([video], [mp4], quiet=True)
    save_videos([video], [gif], quiet=True)
    side = json.loads(mp4.with_suffix(".json").read_text())
    assert side["provenance"]["c2pa"]["signed"] and side["provenance"]["visible_watermark"]
    assert side["provenance"]["c2pa"]["prompt_sha256"] == prompt_sha256(PROMPT)
    report = verify_video(mp4)
    assert report.verdict == "authentic" and report.manifest.tenku["video_id"] == side["video_id"]
    assert report.watermark.payload == payload_from_id(side["video_id"])
    assert [i["title"] for i in report.manifest.ingredients] == ["still.png", "source.mp4"]
    gif_side = json.loads(gif.with_suffix(".json").read_text())
    assert not gif_side["provenance"]["c2pa"]["signed"] and gif_side["provenance"]["c2pa"]["reason"]
    gif_report = verify_video(gif)
    assert not gif_report.manifest.present and gif_report.verdict == "watermark-only"
    assert gif_report.watermark.payload == payload_from_id(gif_side["video_id"])
    marked = read_video(mp4).frames
    assert np.mean(np.any(marked != clip, axis=-1)) > 0.5  # every output carries the marks
