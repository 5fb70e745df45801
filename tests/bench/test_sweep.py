"""``python -m bench.sweep`` still runs: the three sweeps at tiny sizes report every figure (not speed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench.common import Children, with_ratios
from bench.scale import RATIO_KEYS

from bench import sweep

from .support import run_bench


def test_with_ratios_reads_each_row_against_the_first() -> None:
    rows = with_ratios([{"tp": 200.0, "cpu": 0.0}, {"tp": 300.0, "cpu": 5.0}], ("tp", "cpu", "absent"))
    assert rows[0]["vs_first"] == {"tp": 1.0}  # a first value of 0 (or a missing key) gives no ratio
    assert rows[1]["vs_first"] == {"tp": 1.5}
    assert with_ratios([], ("tp",)) == []


def test_a_failed_sweep_is_left_out_with_a_note_and_the_others_still_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fails(*args: object) -> list[dict[str, object]]:
        raise RuntimeError("bench.scale: size 50000 did not finish\nwithin 620 s")

    monkeypatch.setattr(sweep, "workers_sweep", fails)
    monkeypatch.setattr(sweep, "agents_sweep", lambda *args: [{"agents": 1}])
    notes: list[str] = []
    with Children(tmp_path) as children:
        results = sweep.run_sweeps(
            sweep.SWEEP_SIZES["tiny"], children, lambda _: None, ("workers", "agents"), notes
        )
    assert results == {"agents": [{"agents": 1}]}
    assert notes == [
        "sweep workers failed and is left out: bench.scale: size 50000 did not finish within 620 s"
    ]


@pytest.mark.integration
def test_the_sweeps_run_at_tiny_sizes_and_report_every_point(amqp_url: str, tmp_path: Path) -> None:
    argv = ["--tiny", "--json", "--no-plot", "--out", str(tmp_path)]
    code, stdout, stderr = run_bench("bench.sweep", argv, amqp_url, timeout=240)
    assert code == 0, stderr[-3000:]
    data = json.loads(stdout)
    for part, key, xs in (("workers", "workers", [1, 2]), ("agents", "agents", [1, 3])):
        rows = data[part]
        assert [row[key] for row in rows] == xs
        for row in rows:
            assert row["errors"] == 0
            assert 0 < row["low"] <= row["throughput"] <= row["high"]
            assert row["worker_cpu_us_per_task"] > 0
            assert row["vs_first"]["throughput"] == pytest.approx(row["throughput"] / rows[0]["throughput"])
        assert rows[0]["vs_first"] == {"throughput": 1.0, "worker_cpu_us_per_task": 1.0}
    assert all(row["worker_rss_mib"] > 10 for row in data["agents"])
    orchestrator = data["orchestrator"]
    assert [row["n"] for row in orchestrator] == [30, 60]
    for row in orchestrator:
        assert row["errors"] == 0
        assert row["rss_mib"] > 10
        assert row["drain_tasks_per_s"] > 0
        assert set(RATIO_KEYS) <= row.keys()
        # Ratios of figures the first size has (a tiny size's worker CPU can round to 0 clock ticks).
        assert (
            {"drain_tasks_per_s", "orchestrator_cpu_us_per_task"} <= set(row["vs_first"]) <= set(RATIO_KEYS)
        )
    assert not list(tmp_path.glob("*.png"))
