"""The `tenku` command: help, errors that name the field, reproducible output."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest

from tenku.cli import build_parser, main
from tenku.io import read_video


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tenku", *argv], capture_output=True, text=True, check=False
    )


def test_help_explains_every_command_and_option():
    top = run("--help")
    assert top.returncode == 0 and "world" in top.stdout
    parser = build_parser()
    world = parser._subparsers._group_actions[0].choices["world"]
    verbs = world._subparsers._group_actions[0].choices
    assert set(verbs) == {"sample", "render", "dataset"}
    for name, verb in verbs.items():
        for action in verb._actions:
            assert action.help, f"tenku world {name} {action.option_strings} has no help"
    assert "world-64" in run("world", "dataset", "--help").stdout  # presets are listed
    commands = parser._subparsers._group_actions[0].choices
    assert {"generate", "world", "eval", "train", "export"} <= set(commands)
    for name, command in commands.items():
        assert command.description, f"tenku {name} has no description"
        for action in command._actions:
            if not isinstance(action, argparse._SubParsersAction):  # verbs checked above
                assert action.help, f"tenku {name} {action.option_strings} has no help"


def test_help_states_each_default_once_and_never_for_on_off_flags():
    """No "(default 8) (default: None)", no "(default: True)" on an off-by-default flag."""

    def actions(parser: argparse.ArgumentParser, name: str):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for verb, sub in action.choices.items():
                    yield from actions(sub, f"{name} {verb}")
            else:
                yield name, parser._get_formatter()._get_help_string(action) or "", action

    seen = 0
    for name, text, action in actions(build_parser(), "tenku"):
        where = f"{name} {action.option_strings}: {text!r}"
        shown = text.replace("%(default)s", str(action.default))
        assert shown.lower().count("default") <= 1, where
        assert "(default: None)" not in shown and "(default: )" not in shown, where
        if action.nargs == 0:
            assert "%(default)" not in text, where
        seen += "%(default)s" in text
    assert seen > 20  # the formatter still shows the defaults that say something
    generate = run("generate", "--help").stdout
    assert "frames per second (default 8)\n" in generate and "--quiet  " in generate


def test_version():
    assert run("--version").stdout.startswith("tenku ")


NO_TORCH = """
import sys
from tenku.cli import build_parser, main
build_parser()
assert "torch" not in sys.modules, "building the parser imported torch"
for argv in sys.argv[1:]:
    try:
        main(argv.split("|"))
    except SystemExit:
        pass
    assert "torch" not in sys.modules, f"tenku {argv} imported torch"
"""


def test_help_keys_plans_moderate_and_verify_do_not_import_torch(tmp_path):
    """These answer in a fraction of a second: torch (seconds to import) loads only to generate."""
    data = str(tmp_path / "data")
    commands = [
        f"plans|create|ci|--data|{data}",
        f"keys|create|--plan|ci|--name|ci|--data|{data}",
        f"keys|list|--data|{data}",
        f"plans|list|--data|{data}",
        "moderate|--rules-only|a cat sleeps on a sofa",
        "moderate|a decapitation",  # refused by the rules: no model needed
        f"verify|{tmp_path / 'missing.mp4'}",
        "generate|--help",
    ]
    env = {**os.environ, "TENKU_HOME": str(tmp_path / "home")}
    result = subprocess.run(
        [sys.executable, "-c", NO_TORCH, *commands], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr


def test_the_command_index_matches_what_the_modules_register():
    from tenku.cli import COMMANDS, SUMMARIES

    full = build_parser()._subparsers._group_actions[0]
    assert [a.dest for a in full._choices_actions] == list(COMMANDS) == list(SUMMARIES)
    assert {a.dest: a.help for a in full._choices_actions} == SUMMARIES
    top = run("--help").stdout
    assert all(name in top for name in COMMANDS) and "train the default model" in top


TOP_HELP = """
import sys
from tenku.cli import main
try:
    main(["--help"])
except SystemExit:
    pass
loaded = [m for m in sys.modules if m.startswith("tenku.cli.") or m in ("numpy", "torch")]
assert not loaded, loaded
main(sys.argv[1].split("|"))
assert "tenku.cli.world" not in sys.modules and "numpy" not in sys.modules
"""


def test_tenku_help_and_keys_list_import_only_what_they_use(tmp_path):
    """`tenku --help` is the index alone; `tenku keys list` loads the serve commands only."""
    env = {**os.environ, "TENKU_HOME": str(tmp_path / "home")}
    argv = f"keys|list|--data|{tmp_path / 'data'}"
    result = subprocess.run(
        [sys.executable, "-c", TOP_HELP, argv], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr


def test_the_request_knows_every_sampler_without_importing_them():
    from tenku.diffusion import SAMPLERS
    from tenku.pipelines.request import SAMPLER_NAMES

    assert sorted(SAMPLER_NAMES) == sorted(SAMPLERS)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["world", "sample", "--out", "x", "--size", "100x64"], "multiples of 16"),
        (["world", "sample", "--out", "x", "--size", "big"], "expected WxH"),
        (["world", "sample", "--out", "x", "--pillar-prob", "2"], "pillar-prob"),
        (["world", "sample", "--out", "x", "--frames", "0"], "frames"),
        (["world", "dataset", "--preset", "nope", "--out", "x"], "invalid choice"),
        (["world", "dataset", "--preset", "tiny", "--out", "x", "--videos", "0"], "videos"),
    ],
)
def test_bad_input_names_the_field(tmp_path, argv, message):
    result = subprocess.run(
        [sys.executable, "-m", "tenku", *argv], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


def test_render_rejects_bad_specs(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["world", "render", str(bad), "-o", str(tmp_path / "o.mp4")]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    spec = {
        "objects": [{"colour": "black", "shape": "circle", "size": "small", "x": 0.5, "y": 0.5}]
    }
    bad.write_text(json.dumps(spec))
    assert main(["world", "render", str(bad), "-o", str(tmp_path / "o.mp4")]) == 2
    assert "objects[0].colour" in capsys.readouterr().err
    assert not (tmp_path / "o.mp4").exists()


def test_sample_is_reproducible_and_render_matches(tmp_path):
    assert main(["world", "sample", "-n", "3", "--out", str(tmp_path / "a"), "-q"]) == 0
    assert main(["world", "sample", "-n", "1", "--out", str(tmp_path / "b"), "-q"]) == 0
    a = json.loads((tmp_path / "a" / "sample_0000.json").read_text())
    b = json.loads((tmp_path / "b" / "sample_0000.json").read_text())
    assert a == b  # sample i does not depend on -n
    out = tmp_path / "again.mp4"
    assert main(["world", "render", str(tmp_path / "a" / "sample_0000.json"), "-o", str(out)]) == 0
    again = read_video(out).frames
    first = read_video(tmp_path / "a" / "sample_0000.mp4").frames
    assert (again == first).all()  # same spec, same encoder: the same video


def test_png_frames_output(tmp_path):
    argv = ["world", "sample", "-n", "1", "--format", "png", "--frames", "5"]
    assert main([*argv, "--out", str(tmp_path), "-q"]) == 0
    assert len(list((tmp_path / "sample_0000").glob("*.png"))) == 5
