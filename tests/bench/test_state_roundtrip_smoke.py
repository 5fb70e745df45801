"""``python -m bench.state_roundtrip`` still runs: tiny sizes, every store, every task answered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
@pytest.mark.postgres
def test_the_state_round_trip_bench_runs_with_every_store(amqp_url: str, postgres_url: str) -> None:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {
        **os.environ,
        "RELAYBUS_BENCH_AMQP_URL": amqp_url,
        "RELAYBUS_BENCH_POSTGRES_URL": postgres_url,
        "PYTHONPATH": path,
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.state_roundtrip",
            "--tasks",
            "60",
            "--in-flight",
            "20",
            "--reps",
            "1",
            "--json",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert set(report["stores"]) == {"none", "postgres", "sqlite"}
    assert all(store["errors"] == 0 and store["throughput"] > 0 for store in report["stores"].values())
    assert report["stores"]["postgres"]["ratio_to_none"] > 0
