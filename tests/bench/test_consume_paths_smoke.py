"""``python -m bench.consume_paths`` runs: every consume path drains its queue, each message acked once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from bench.consume_paths import PATHS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_every_consume_path_acks_every_message_and_reports_its_cost(amqp_url: str) -> None:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "RELAYBUS_BENCH_AMQP_URL": amqp_url, "PYTHONPATH": path}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.consume_paths", "--messages", "300", "--reps", "1", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(proc.stdout)
    assert [row["path"] for row in rows] == list(PATHS)
    for row in rows:
        assert row["acked"] == 300, row
        assert row["left_in_queue"] == 0, row  # acked, not just received: nothing returns to the queue
        assert row["cpu_us_per_delivery"] > 0, row
    assert rows[0]["vs_aio_pika"] == 1.0


def test_a_bad_count_is_refused_with_the_flag_named() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.consume_paths", "--messages", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "--messages" in proc.stderr
