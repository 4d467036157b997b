"""Every command shown in the README runs.

The first bash block (set up + main job) runs verbatim in a fresh copy of the repository,
with a new virtual environment. The second (set up + tests) is what `.ci/run` runs, so CI
runs it; here we check `.ci/run` picks exactly that block. The remaining bash and python
blocks run in order, with this environment's `tenku` and `python`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tenku.io import read_video
from tenku.safety.invisible import psnr
from tenku.serve import free_port

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BASH = re.findall(r"```bash\n(.*?)```", README, re.S)
PYTHON = re.findall(r"```python\n(.*?)```", README, re.S)


def fenced_blocks(lang: str) -> list[str]:
    """The bodies of the README's fenced blocks opened with ```lang (``""`` = untagged)."""
    blocks, body, inside = [], [], None
    for line in README.splitlines():
        if line.startswith("```"):
            if inside is None:
                inside, body = line[3:].strip(), []
            else:
                if inside == lang:
                    blocks.append("\n".join(body) + "\n")
                inside = None
        elif inside is not None:
            body.append(line)
    return blocks


def repo_copy(dest: Path) -> Path:
    """Copy the files git knows (tracked or not ignored) into ``dest``, as a clone would."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def test_readme_starts_with_the_two_commands():
    head = README.split("```")[0:4]
    assert "main job" in head[0] and "test suite" in head[2]
    assert BASH[0].count("\n") == 1 and BASH[1].count("\n") == 1  # one command each
    assert "pip install torch==2.13.0" in BASH[0] and "pip install torch==2.13.0" in BASH[1]
    assert "pytest" in BASH[1]


def test_ci_runs_the_readme_test_command():
    script = (ROOT / ".ci" / "run").read_text()
    picked = re.findall(r"blocks\[(\d)\]", script)
    assert picked == ["1"]  # the second bash block, which is the test command
    assert os.access(ROOT / ".ci" / "run", os.X_OK)


@pytest.mark.slow
def test_readme_main_command_in_a_fresh_copy(tmp_path):
    repo = repo_copy(tmp_path / "repo")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    subprocess.run(["bash", "-euo", "pipefail", "-c", BASH[0]], cwd=repo, env=env, check=True)
    video = read_video(repo / "ball.mp4")
    assert video.frames.shape == (33, 128, 128, 3) and video.fps == 8  # 4 s at 8 fps
    sidecar = json.loads((repo / "ball.json").read_text())
    assert sidecar["request"]["prompt"] == "a red ball bounces on a white background"
    assert isinstance(sidecar["request"]["seed"], int)


def test_readme_examples(tmp_path):
    (tmp_path / "bench").symlink_to(ROOT / "bench")
    (tmp_path / ".venv").symlink_to(sys.prefix)  # the README's `.venv/bin/...` paths
    for block in BASH[2:]:
        for line in block.strip().splitlines():
            subprocess.run(["bash", "-euo", "pipefail", "-c", line], cwd=tmp_path, check=True)
    assert len(list((tmp_path / "samples" / "wide").glob("*.mp4"))) == 4
    assert read_video(tmp_path / "samples" / "tall" / "sample_0000.gif").fps == pytest.approx(
        24, rel=0.01
    )
    assert (tmp_path / "samples" / "again.mp4").exists()
    square = read_video(tmp_path / "videos" / "square.mp4")
    assert square.frames.shape == (17, 128, 128, 3)
    np.testing.assert_array_equal(
        read_video(tmp_path / "videos" / "square-again.mp4").frames, square.frames
    )
    for i in (1, 2):  # --variations 2 -o videos/tri.mp4, as the README says
        tri = tmp_path / "videos" / f"tri-{i}.mp4"
        assert read_video(tri).frames.shape == (33, 128, 224, 3)
        assert json.loads(tri.with_suffix(".json").read_text())["request"]["seed"] == i
    assert not (tmp_path / "videos" / "tri.mp4").exists()
    still = read_video(tmp_path / "videos" / "still.png").frames
    up = read_video(tmp_path / "videos" / "up.mp4").frames
    assert still.shape == (1, 128, 128, 3) and up.shape == (17, 128, 128, 3)
    # the image is the first frame; both files carry their own marks and H.264's losses
    assert psnr(up[0], still[0]) >= 30
    longer = read_video(tmp_path / "videos" / "longer.mp4").frames
    assert longer.shape == (33, 128, 128, 3)
    assert psnr(longer[:17], square.frames) >= 30  # the source is kept
    assert read_video(tmp_path / "videos" / "loop.mp4").frames.shape == (25, 128, 128, 3)
    assert read_video(tmp_path / "videos" / "joined.mp4").frames.shape == (41, 128, 128, 3)
    assert read_video(tmp_path / "videos" / "story.mp4").frames.shape == (65, 128, 128, 3)
    assert (tmp_path / "videos" / "yellow.json").exists()
    assert (tmp_path / "report" / "model" / "128x128" / "summary.md").exists()
    assert (tmp_path / "data" / "tiny" / "index.json").exists()
    assert (tmp_path / "report" / "gt" / "64x64" / "contact_sheet.png").exists()
    mirrored = json.loads((tmp_path / "report" / "mirror" / "64x64" / "results.json").read_text())
    assert mirrored["summary"]["overall"]["mirror_confusion"] >= 0.9
    cwd = Path.cwd()
    try:
        os.chdir(tmp_path)
        for block in PYTHON:
            exec(compile(block, "README.md", "exec"), {})
    finally:
        os.chdir(cwd)


def test_readme_retrain_recipe_runs_with_the_tiny_presets(tmp_path):
    """The training recipe (an untagged block: hours of CPU) with `--recipe tiny`."""
    (block,) = [b for b in fenced_blocks("") if "tenku train" in b]
    bin_dir = Path(sys.executable).parent
    for line in block.strip().splitlines():
        tiny = "--recipe tiny --budget 15s --no-progress"
        line = line.replace("--recipe world --budget 150m", tiny)
        line = line.replace("tenku generate", "tenku generate --size 64x64 --seconds 1 --quiet")
        subprocess.run(
            ["bash", "-euo", "pipefail", "-c", f"{bin_dir}/{line}"], cwd=tmp_path, check=True
        )
    assert read_video(tmp_path / "ball.mp4").frames.shape == (9, 64, 64, 3)


@pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")
def test_readme_serve_example(tmp_path):
    """The README's serve example as written, line by line in bash from the folder of the
    first command (`.venv` is this environment): install the client, a plan, a key saved to
    a file, `tenku serve` (on a free port instead of 8000), then the `openai` client code,
    which reads the key's token from that file, with the shipped model."""
    (shell,) = [b for b in fenced_blocks("") if "tenku serve" in b]
    (client_code,) = [b for b in fenced_blocks("") if "OpenAI(" in b]
    (tmp_path / ".venv").symlink_to(sys.prefix)
    *setup, serve = shell.strip().splitlines()
    assert all(line.startswith(".venv/bin/") for line in shell.strip().splitlines())
    for line in setup:
        subprocess.run(["bash", "-euo", "pipefail", "-c", line], cwd=tmp_path, check=True)
    assert "tk-" in (tmp_path / "alice.key").read_text(), "`tenku keys create` saved no token"
    port = free_port()
    server = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", f"exec {serve.replace('8000', str(port))}"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi.json", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, "tenku serve did not start in 120 s"
                time.sleep(0.5)
        cwd = Path.cwd()
        try:
            os.chdir(tmp_path)
            code = client_code.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
            exec(compile(code, "README.md", "exec"), {})
        finally:
            os.chdir(cwd)
    finally:
        server.terminate()
        server.wait(timeout=60)
    video = read_video(tmp_path / "ball.mp4")
    assert video.frames.shape == (33, 128, 128, 3) and video.fps == 8
