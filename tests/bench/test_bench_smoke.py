"""The benchmarks still run: every part of ``python -m bench`` at tiny sizes, so they do not rot.

Nothing here judges speed (that is what ``make bench`` and ``bench/RESULTS.md`` are for); it checks that each
benchmark ran every task it was asked to, got no failed result, and wrote the table.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from bench.common import Spread, percentile

ROOT = Path(__file__).resolve().parents[2]


def test_percentile_is_nearest_rank() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert percentile(values, 0.0) == 1.0
    assert percentile(values, 0.5) == 3.0
    assert percentile(values, 1.0) == 5.0
    assert percentile([], 0.5) == 0.0


def test_spread_shows_median_and_range() -> None:
    spread = Spread.of([3.0, 1.0, 2.0])
    assert (spread.median, spread.low, spread.high, spread.n) == (2.0, 1.0, 3.0, 3)
    assert spread.fmt(1, "x") == "2.0x (1.0-3.0)"
    assert Spread.of([]).fmt() == "n/a"


@pytest.mark.integration
def test_tiny_bench_run_measures_every_part_and_writes_the_table(amqp_url: str, tmp_path: Path) -> None:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "RELAYBUS_BENCH_AMQP_URL": amqp_url, "PYTHONPATH": path}
    # Its own process group: on a timeout the benchmark and every server it started are killed together.
    bench = subprocess.Popen(
        [sys.executable, "-m", "bench", "--tiny", "--no-celery", "--no-plot", "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, stderr = bench.communicate(timeout=120)
    finally:
        if bench.poll() is None:
            os.killpg(bench.pid, signal.SIGKILL)
            bench.wait()
    assert bench.returncode == 0, stderr[-3000:]
    data = json.loads((tmp_path / "results.json").read_text())
    points = data["sizes"]["points"]
    for framework in (
        "relaybus",
        "raw aio-pika",
        "raw aio-pika, durable reply queue",
        "faststream",
        "relaybus MemoryBus",
    ):
        reps = data["roundtrip"][framework]
        assert len(reps) == 1
        assert [p["n"] for p in reps[0]] == [n for n, _ in points]
        assert all(p["errors"] == 0 and p["throughput"] > 0 for p in reps[0]), reps
    for framework in ("relaybus", "raw aio-pika + aiohttp", "no bus, aiohttp alone (the machine's floor)"):
        ((run,),) = data["llm"][framework]
        assert run["errors"] == 0
        assert run["n"] == data["sizes"]["llm_n"]
    assert data["seed"]["sequential"]["n"] == data["sizes"]["seed_small"]
    assert data["seed"]["costs"]["asyncio_run_with_client_ms"] > data["seed"]["costs"]["asyncio_run_ms"]
    assert data["rss"]["relaybus worker, idle"] > 10
    results = (tmp_path / "RESULTS.md").read_text()
    assert "### Targets (issue 18)" in results
    assert "relaybus: execute_tasks -> `relaybus worker` -> result" in results
    assert "| the same, raw with relaybus's durable reply queue |" in results
    assert "LLM-bound relaybus vs the same calls with no bus (aiohttp alone)" in results
    assert not (tmp_path / "throughput.png").exists()
