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
    "inbound": [
        *("--residents", "4", "--seconds", "1", "--warmup", "0.5", "--rate", "5"),
        *("--crowd-start", "3", "--crowd-max", "6", "--call-members", "20", "--call-window", "1"),
        # One round of the durable echo and gridbot: each further round starts two more bots.
        *("--rounds", "1"),
    ],
    "isolation": [
        *("--others", "3", "--seconds", "1", "--warmup", "0.5", "--flood", "30"),
        *("--flood-seconds", "1", "--retry-after", "5", "--paid-rate", "50"),
        *("--paid-members", "30", "--paid-window", "1"),
    ],
    "startup": ["--runs", "1"],
    "stats": ["--tickets", "2000", "--filed", "10"],
}

# What each script's JSON must hold (the others: just "benchmark").
KEYS = {
    "stats": {
        "database",
        "city_s",
        "street_s",
        "city_chart_s",
        "street_chart_s",
        "filing_cost_ratio",
        "first_rollup_s",
        "rollup_slices",
        "rollup_longest_slice_s",
        "city_figures",
    },
    "inbound": {
        "database",
        "bare_updates_per_s",
        "durable_echo_updates_per_s",
        "gridbot_updates_per_s",
        "ratio_gridbot_durable",
        "ratio_rounds",
        "residents_p50_ms",
        "residents_p99_ms",
        "call_p99_ms",
        "bulk_rate_in_window",
        "call_delivered",
        "gridbot_429",
        "errors",
    },
    "isolation": {
        "database",
        "baseline_p99_ms",
        "flood_p99_ms",
        "flood_notices",
        "blocked_p99_ms",
        "paid_delivered_rate",
        "paid_ratio",
        "paid_p99_ms",
        "unforced_429",
        "errors",
    },
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
    assert KEYS.get(name, set()) <= figures.keys()


# The cluster needs PostgreSQL (several processes on one database): three bots, five residents,
# fifty members, the sending process killed half-way through the second call.
CLUSTER_SMALL = [
    "--residents",
    "5",
    "--members",
    "50",
    "--coming",
    "5",
    "--seconds",
    "5",
    "--remind-after",
    "8",
]
CLUSTER_KEYS = {
    "benchmark",
    "processes",
    "residents",
    "members",
    "dialogs_completed",
    "tickets",
    "rows",
    "duplicates",
    "lost",
    "bulk_rate",
    "bulk_ratio",
    "received_429",
    "send_lease",
    "reminders_once",
    "killed",
    "failover_s",
    "kill_duplicates",
    "kill_unrecorded",
    "kill_lost",
}


@pytest.mark.postgres
@pytest.mark.timeout(420)
def test_the_cluster_benchmark_runs_and_loses_nothing(postgres_url: str, tmp_path: Path) -> None:
    script = ROOT / "benchmarks" / "cluster.py"
    done = subprocess.run(
        [sys.executable, str(script), *CLUSTER_SMALL, "--database-url", postgres_url],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["benchmark"] == "cluster"
    assert set(figures) >= CLUSTER_KEYS, CLUSTER_KEYS - set(figures)
    assert figures["duplicates"] == 0 and figures["lost"] == 0, done.stdout[-3000:]
    # The kill: nothing lost; sent twice only what the dead process sent but never recorded.
    assert figures["killed"] is not None, done.stdout[-3000:]
    assert figures["kill_lost"] == 0, done.stdout[-3000:]
    assert figures["kill_duplicates"] <= figures["kill_unrecorded"], done.stdout[-3000:]
