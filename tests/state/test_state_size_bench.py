"""``python -m bench.state_size`` still runs (at a tiny size) on both stores and reports every table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.postgres
def test_the_size_benchmark_fills_both_stores_and_reports_their_growth(postgres_url: str) -> None:
    env = {**os.environ, "RELAYBUS_BENCH_POSTGRES_URL": postgres_url, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "bench.state_size", "--tasks", "60", "--output-bytes", "5000", "--json"]
    out = subprocess.run(command, capture_output=True, text=True, check=True, env=env, cwd=ROOT, timeout=300)
    reports = json.loads(out.stdout)
    assert [report["store"] for report in reports] == ["SqliteStore", "PostgresStore"]
    for report in reports:
        grown = {table: report["written"][table] - report["empty"][table] for table in report["empty"]}
        assert grown["relaybus_results"] > 60 * 5000 / 4, "every result is stored (compressed at most 4x)"
        assert all(
            grown[table] > 0 for table in ("relaybus_claims", "relaybus_run_tasks", "relaybus_task_events")
        )
        assert report["tasks_s"] > 0
