"""schemathesis against a live `tenku serve` with a key, in the bench's short mode."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "schemathesis_serve.py"


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_and_no_schema_violation(tmp_path):
    """40 s of every phase and check (but ST202, see the bench) on every operation: no 5xx, no
    failure, no exception in the server's log."""
    run = subprocess.run(
        [sys.executable, str(BENCH), "--seconds", "40", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=400,
    )
    summary = json.loads((tmp_path / "summary.json").read_text())
    detail = f"{summary}\n{(tmp_path / 'st.out').read_text()[-4000:]}"
    assert summary["cases"] > 100, detail  # it ran
    assert summary["5xx"] == 0 and summary["server_exceptions"] == 0, detail
    assert summary["failures"] == {} and summary["errors"] == 0, detail
    assert run.returncode == 0, detail
