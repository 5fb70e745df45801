"""``python -m bench.agent_loop`` still runs: both parts at tiny sizes (speed is not judged here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .support import run_bench


@pytest.mark.integration
def test_the_agent_loop_bench_measures_both_parts_and_writes_its_json(amqp_url: str, tmp_path: Path) -> None:
    argv = ["--reps", "1", "--cpu-tasks", "10", "--tasks", "4", "--latency", "0.05", "--out", str(tmp_path)]
    code, stdout, stderr = run_bench("bench.agent_loop", argv, amqp_url)
    assert code == 0, stderr[-3000:]
    data = json.loads((tmp_path / "agent_loop.json").read_text())
    assert data["cpu"]["tasks"] == 10
    assert data["cpu"]["loop_us_per_turn"]["n"] == 1
    assert data["cpu"]["bare_provider_us_per_turn"]["median"] > 0
    (concurrent,) = data["concurrent"]  # every task of both variants succeeded, or the bench failed
    assert concurrent["tasks"] == 4
    assert concurrent["ideal_loop_s"] == pytest.approx(0.15)
    assert concurrent["loop_wall_s"]["median"] > 0
    assert "agent loop (`Agent.tools`)" in stdout
