"""Start-up time of the `tenku` command: `tenku --help` and `tenku keys list`.

    python bench/cli.py [--runs 5]

Runs each command ``--runs`` times as a fresh process (the console script next to this Python,
as a user types it) and prints the median and the range of the wall times, against the targets
(0.3 s and 0.5 s). `tenku --help` is built from the command index (``tenku.cli.COMMANDS``)
and imports no command module; ``keys list`` imports the serve commands and the SQLite job store
only, and reads an empty data folder made for the run (so it also creates the store).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {"--help": 0.3, "keys list": 0.5}


def tenku_command() -> list[str]:
    """The installed console script, else ``python -m tenku``."""
    script = Path(sys.executable).with_name("tenku")
    return [str(script)] if script.exists() else [sys.executable, "-m", "tenku"]


def wall_times(argv: list[str], runs: int, env: dict[str, str]) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="processes per command (default 5)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tenku-bench-cli-") as tmp:
        env = {**os.environ, "TENKU_HOME": str(Path(tmp) / "home")}
        commands = {"--help": ["--help"], "keys list": ["keys", "list", "--data", tmp]}
        print(f"{'command':15s} {'median':>8s} {'min':>7s} {'max':>7s} {'target':>7s}")
        for name, argv in commands.items():
            times = wall_times([*tenku_command(), *argv], args.runs, env)
            median = statistics.median(times)
            verdict = "ok" if median <= TARGETS[name] else "over"
            print(
                f"tenku {name:9s} {median:7.3f}s {min(times):6.3f}s {max(times):6.3f}s "
                f"{TARGETS[name]:6.1f}s {verdict}"
            )
    print(f"({args.runs} runs each; load average {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
