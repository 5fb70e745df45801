"""``python -m bench.streaming`` still runs: both parts at tiny sizes (speed is not judged here)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_the_streaming_bench_measures_both_parts_and_writes_its_json(amqp_url: str, tmp_path: Path) -> None:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "RELAYBUS_BENCH_AMQP_URL": amqp_url, "PYTHONPATH": path}
    out = tmp_path / "streaming.json"
    argv = ["--reps", "2", "--tasks", "3", "--tokens", "30", "--json", str(out)]
    bench = subprocess.Popen(
        [sys.executable, "-m", "bench.streaming", *argv],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # on a timeout the bench and every process it started are killed together
    )
    try:
        stdout, stderr = bench.communicate(timeout=180)
    finally:
        if bench.poll() is None:
            os.killpg(bench.pid, signal.SIGKILL)
            bench.wait()
    assert bench.returncode == 0, stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["ttft"]["relaybus"]["n"] == 2
    streamed, plain = data["concurrent"]["streamed"], data["concurrent"]["plain"]
    assert streamed["events_per_task"] >= 1
    assert streamed["provider_chunks_per_task"] >= 30
    assert plain["events_per_task"] == 0
    assert "relaybus adds" in stdout
