"""The Fleet view's data: one row per live worker (sorted), per agent the workers hosting it with their load
summed and its queue's figures; the broker node and provider/model are shown when the heartbeat has them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from relaybus.console.fleet import fleet_of
from relaybus.console.queues import QueueStats
from relaybus.messages import WorkerHeartbeat

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def beat(worker: str, agents: tuple[str, ...], in_flight: int, age_s: float) -> WorkerHeartbeat:
    return WorkerHeartbeat(
        worker=worker,
        host=worker.split(":")[0],
        pid=int(worker.split(":")[1]),
        agents=agents,
        in_flight=in_flight,
        capacity=8,
        interval_s=5,
        timestamp=NOW - timedelta(seconds=age_s),
    )


def test_workers_and_agents_with_their_queue_figures() -> None:
    beats = [beat("b:2", ("writer", "coder"), 3, 1.5), beat("a:1", ("writer",), 5, 0.5)]
    stats = {"relaybus.agent.writer": QueueStats(messages=12, consumers=2)}
    fleet = fleet_of(beats, stats.get, NOW)
    assert [w.worker for w in fleet.workers] == ["a:1", "b:2"]
    assert [w.age_s for w in fleet.workers] == [0.5, 1.5]
    assert (fleet.in_flight, fleet.capacity) == (8, 16)
    by_agent = {a.agent: a for a in fleet.agents}
    assert list(by_agent) == ["coder", "writer"]
    assert (by_agent["writer"].workers, by_agent["writer"].in_flight, by_agent["writer"].capacity) == (
        2,
        8,
        16,
    )
    assert by_agent["writer"].stats == QueueStats(messages=12, consumers=2)
    assert by_agent["coder"].stats is None  # not read (yet): the page shows "-"
    assert fleet.workers[0].node is None


def test_a_heartbeat_that_names_its_broker_node_and_model_shows_them() -> None:
    extended = beat("a:1", ("writer",), 0, 0).model_copy(
        update={"broker": "rabbit-2:5672", "llm": "openai/m1"}
    )
    [row] = fleet_of([extended], lambda _: None, NOW).workers
    assert (row.node, row.llm) == ("rabbit-2:5672", "openai/m1")
