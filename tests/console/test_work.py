"""The Work chart's data: one observation per task id for the last hour, folded per minute into tasks/s by
status, p50/p99 duration and tokens per minute; quantiles by nearest rank."""

from __future__ import annotations

from uuid import uuid4

import pytest

from relaybus.console.work import Observation, WorkWindow, quantile

NOW = 1_900_000_000.0


def test_quantiles_are_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert quantile(values, 0.5) == 50.0
    assert quantile(values, 0.99) == 99.0
    assert quantile([3.0], 0.99) == 3.0
    assert quantile([], 0.5) is None


def test_the_window_folds_observations_per_minute() -> None:
    window = WorkWindow(clock=lambda: NOW)
    for n in range(30):  # the last minute: 30 successes of 1..30 s, 10 tokens each
        window.add(uuid4(), Observation(NOW - 1, "success", float(n + 1), 10))
    window.add(uuid4(), Observation(NOW - 1, "failure", None, 0))
    window.add(uuid4(), Observation(NOW - 59 * 60 - 30, "success", 2.0, 7))  # the oldest minute
    series = window.series()
    assert series.minutes == 60
    assert series.rates["success"][-1] == pytest.approx(30 / 60)
    assert series.rates["failure"][-1] == pytest.approx(1 / 60)
    assert series.rates["success"][0] == pytest.approx(1 / 60)
    assert sum(series.rates["timeout"]) == 0
    assert (series.p50_s[-1], series.p99_s[-1]) == (15.0, 30.0)
    assert series.p50_s[1] is None
    assert series.tokens_per_min[-1] == 300
    assert series.tokens_per_min[0] == 7
    assert series.totals["success"] == 31
    assert series.totals["failure"] == 1


def test_a_task_counts_once_and_the_window_forgets_what_is_older_than_an_hour() -> None:
    now = [NOW]
    window = WorkWindow(clock=lambda: now[0])
    task = uuid4()
    window.add(task, Observation(NOW - 10, "success", 1.0, 1))
    window.add(task, Observation(NOW - 5, "failure", 1.0, 1))  # the same task seen again
    window.add(uuid4(), Observation(NOW - 3700, "success", 1.0, 1))  # already too old
    assert window.series().totals == {"success": 1, "failure": 0, "timeout": 0, "cancelled": 0, "rejected": 0}
    now[0] = NOW + 3600
    assert window.series().totals["success"] == 0
    assert len(window) == 0


async def test_the_heartbeat_counter_counts_what_each_worker_answered_since_the_last_look() -> None:
    from relaybus.console.work import HeartbeatCounter
    from relaybus.messages import WorkerHeartbeat

    def beat(worker: str, processed: int) -> WorkerHeartbeat:
        return WorkerHeartbeat(
            worker=worker,
            host="h",
            pid=1,
            agents=("a",),
            in_flight=0,
            capacity=1,
            processed=processed,
            interval_s=5,
        )

    window = WorkWindow(clock=lambda: NOW)
    beats = [beat("w1", 10), beat("w2", 100)]
    counter = HeartbeatCounter(window, lambda: beats)
    await counter.sample()  # the first look only sets the baseline
    assert sum(window.series().processed_per_s) == 0
    beats = [beat("w1", 25), beat("w2", 130), beat("w3", 7)]  # w3 is new: baseline only
    await counter.sample()
    beats = [beat("w1", 2), beat("w2", 130), beat("w3", 8)]  # w1 restarted: starts over
    await counter.sample()
    series = window.series()
    assert series.processed_per_s[-1] == pytest.approx((15 + 30 + 1) / 60)
    assert sum(series.processed_per_s[:-1]) == 0
