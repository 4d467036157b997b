"""Every command shown in the README runs.

The slow test clones the repository (its HEAD) into a temporary folder and runs every
runnable block there in order, as a user pastes them: the first bash block makes `.venv`
(python3.11, torch, the package) and `ball.mp4`, then the later blocks run with that
`.venv`, the Serve example included (`tenku serve` in the background on a free port). The
second bash block (set up + tests) is what `.ci/run` runs, so CI runs it; here we check
`.ci/run` picks exactly that block. The fast tests run the same later blocks with this
environment's `tenku` and `python` and check what they wrote.
"""

from __future__ import annotations

import json
import os
import re
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


def readme_blocks() -> list[tuple[str, str]]:
    """The README's fenced blocks in order: (language, body); language ``""`` = untagged."""
    blocks, body, inside = [], [], None
    for line in README.splitlines():
        if line.startswith("```"):
            if inside is None:
                inside, body = line[3:].strip(), []
            else:
                blocks.append((inside, "\n".join(body) + "\n"))
                inside = None
        elif inside is not None:
            body.append(line)
    return blocks


def fenced_blocks(lang: str) -> list[str]:
    """The bodies of the README's fenced blocks opened with ```lang (``""`` = untagged)."""
    return [body for tag, body in readme_blocks() if tag == lang]


def tiny_training(line: str) -> str:
    """A line of the README's training recipe (hours of CPU) with the tiny recipe instead."""
    line = line.replace("--recipe world --budget 150m", "--recipe tiny --budget 15s --no-progress")
    return line.replace("tenku generate", "tenku generate --size 64x64 --seconds 1 --quiet")


def wait_for_server(
    server: subprocess.Popen, port: int, log: Path | None = None, timeout_s: float = 120
) -> None:
    """Wait until the `tenku serve` in ``server`` answers on ``port`` (its stderr: a pipe,
    or the file ``log``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if server.poll() is not None:
            said = log.read_text() if log else server.stderr.read().decode()
            pytest.fail(f"tenku serve exited {server.returncode}: {said}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi.json", timeout=2)
            return
        except OSError:
            assert time.monotonic() < deadline, f"tenku serve did not start in {timeout_s} s"
            time.sleep(0.5)


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
        line = tiny_training(line).replace(".venv/bin/", f"{bin_dir}/")
        subprocess.run(["bash", "-euo", "pipefail", "-c", line], cwd=tmp_path, check=True)
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
        wait_for_server(server, port)
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


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")
def test_readme_in_a_fresh_clone(tmp_path):
    """Every runnable README block, in order, in a fresh clone of HEAD, as a user pastes them.

    The first bash block makes the clone's `.venv` (python3.11, torch, the package); every
    later block runs from the clone's folder with it. Left out, by name: the test command
    (CI runs it; it would run this test again), the benchmarks that need the dev extra or
    minutes each (`bench/generate.py` and the list after it), and in the training recipe
    only the budget (hours) and the video's size, as in the fast test above.
    """
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    repo = tmp_path / "tenku"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}

    def bash(script: str) -> None:
        subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=repo, env=env, check=True)

    def python(code: str) -> None:
        subprocess.run(
            [".venv/bin/python", "-"], input=code, text=True, cwd=repo, env=env, check=True
        )

    blocks = readme_blocks()
    tests_block = [b for _, b in blocks].index(BASH[1])
    server = None
    started = time.monotonic()
    try:
        for i, (lang, block) in enumerate(blocks):
            if i == tests_block or "bench/generate.py" in block or "bench/tasks.py" in block:
                continue
            print(f"{time.monotonic() - started:6.0f} s  block {i} ({lang or 'untagged'})")
            if lang == "bash":
                bash(block)
                if i == 0:  # the main job
                    video = read_video(repo / "ball.mp4")
                    assert video.frames.shape == (33, 128, 128, 3) and video.fps == 8  # 4 s
                    sidecar = json.loads((repo / "ball.json").read_text())["request"]
                    assert sidecar["prompt"] == "a red ball bounces on a white background"
            elif lang == "python":
                python(block)
            elif "tenku train" in block:
                bash("".join(tiny_training(line) + "\n" for line in block.splitlines()))
            elif "tenku serve" in block:
                *setup, serve = block.strip().splitlines()
                bash("\n".join(setup))
                port, log = free_port(), tmp_path / "serve.log"
                with log.open("w") as stderr:  # a file: a full pipe would stall the server
                    server = subprocess.Popen(
                        ["bash", "-c", f"exec {serve.replace('8000', str(port))}"],
                        cwd=repo,
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=stderr,
                    )
                wait_for_server(server, port, log)
            elif "OpenAI(" in block:
                assert server is not None, "the client code comes after `tenku serve`"
                python(block.replace("127.0.0.1:8000", f"127.0.0.1:{port}"))
            else:
                pytest.fail(f"README block {i} ({lang or 'untagged'}) is not run: {block[:80]!r}")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=60)
    print(f"{time.monotonic() - started:6.0f} s  done")  # the wall times, with pytest -s
    video = read_video(repo / "ball.mp4")  # the client's download
    assert video.frames.shape == (33, 128, 128, 3) and video.fps == 8
    assert (repo / "videos" / "story.mp4").exists() and (repo / "data" / "tiny").is_dir()
    assert (repo / "report" / "model" / "128x128" / "summary.md").exists()
