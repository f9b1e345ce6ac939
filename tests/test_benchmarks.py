"""Every benchmark still runs: each script, at a tiny size, ends with its line of JSON.

Nothing here measures anything (no timing is asserted); it only keeps the scripts in step
with the code they measure, so a figure can always be taken again.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SMALL = {
    "sweep": ["--sizes", "300,600", "--due", "100"],
    "fanout": ["--members", "60", "--deliver", "3", "--claims", "20", "--places", "5"],
    "outbox": ["--chats", "20", "--per-chat", "2"],
    "inbound": ["--residents", "4", "--seconds", "1", "--warmup", "0.5", "--rate", "10"],
    "startup": ["--runs", "1"],
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_the_benchmark_runs_and_ends_with_json(name: str, tmp_path: Path) -> None:
    script = ROOT / "benchmarks" / f"{name}.py"
    done = subprocess.run(
        [sys.executable, str(script), *SMALL[name]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    last = done.stdout.strip().splitlines()[-1]
    figures = json.loads(last)
    assert figures["benchmark"] == name
