"""``python -m bench.streaming`` still runs: both parts at tiny sizes (speed is not judged here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .support import run_bench


@pytest.mark.integration
def test_the_streaming_bench_measures_both_parts_and_writes_its_json(amqp_url: str, tmp_path: Path) -> None:
    out = tmp_path / "streaming.json"
    argv = ["--reps", "2", "--tasks", "3", "--tokens", "30", "--json", str(out)]
    code, stdout, stderr = run_bench("bench.streaming", argv, amqp_url)
    assert code == 0, stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["ttft"]["relaybus"]["n"] == 2
    streamed, plain = data["concurrent"]["streamed"], data["concurrent"]["plain"]
    assert streamed["events_per_task"] >= 1
    assert streamed["provider_chunks_per_task"] >= 30
    assert plain["events_per_task"] == 0
    assert "relaybus adds" in stdout
