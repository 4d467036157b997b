"""ruff is part of the test suite: lint and format are clean."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_check():
    subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, check=True)


def test_ruff_format():
    subprocess.run([sys.executable, "-m", "ruff", "format", "--check", "."], cwd=ROOT, check=True)
