"""``relaybus agents``: lists the live workers with their agents and load; exit 1 when none answers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from rich.console import Console

from relaybus.agents import AgentWorker, WorkerHeartbeat
from relaybus.bus.codec import encode_heartbeat
from relaybus.bus.memory import MemoryBus
from relaybus.cli.agents import collect_heartbeats, render_table
from relaybus.testing.agents import FakeExecutor
from tests.agents import processes
from tests.agents import sample_agents as sa
from tests.agents.processes import Fleet
from tests.eventually import let_the_loop_run

from .support import assert_fits, one_error_line, run_cli, run_cli_async, table_rows

fleet = processes.fleet


async def test_collect_gets_an_answer_from_each_live_worker_at_once() -> None:
    async with MemoryBus() as bus:
        executor = FakeExecutor()
        one = AgentWorker(bus, [sa.Echo()], worker_id="one", executor=executor, heartbeat_interval_s=3600)
        two = AgentWorker(
            bus,
            [sa.Failing(), sa.ChainC()],
            worker_id="two",
            executor=executor,
            heartbeat_interval_s=3600,
            concurrency=3,
        )
        async with one, two:
            await let_the_loop_run()  # their start-up beats go by before anyone listens
            beats = await collect_heartbeats(bus, 0.2)
    assert set(beats) == {"one", "two"}
    assert beats["two"].agents == (sa.name("failing"), sa.name("chain-c"))
    assert beats["two"].capacity == 3
    assert beats["two"].status == "running"


def test_table_shows_worker_agents_load_and_heartbeat_age() -> None:
    now = datetime.now(UTC)
    beat = WorkerHeartbeat(
        worker="host-a:42",
        host="host-a",
        pid=42,
        agents=("reviewer", "writer"),
        in_flight=3,
        capacity=16,
        processed=120,
        interval_s=5,
        timestamp=now - timedelta(seconds=4),
    )
    console = Console(width=200, record=True)
    console.print(render_table([beat], now, {"reviewer": 7, "writer": 2}))
    text = console.export_text()
    for expected in ("host-a:42", "reviewer, writer", "3/16", " 9 ", "120", "running", "4.0s ago"):
        assert expected in text


def test_a_worker_silent_for_three_heartbeat_intervals_is_late_and_its_age_is_real() -> None:
    now = datetime.now(UTC)
    beat = WorkerHeartbeat(
        worker="host-b:7",
        host="host-b",
        pid=7,
        agents=("reviewer",),
        in_flight=0,
        capacity=1,
        interval_s=5,
        timestamp=now - timedelta(seconds=16),
        llm="openai/gpt-4o-mini",
    )
    console = Console(width=200, record=True)
    console.print(render_table([beat], now))
    text = console.export_text()
    assert "late" in text
    assert "16.0s ago" in text
    assert "openai/gpt-4o-mini" in text


def test_table_shows_the_broker_node_of_each_worker_when_they_are_on_several() -> None:
    now = datetime.now(UTC)
    fields = {"host": "h", "pid": 1, "agents": ("a",), "in_flight": 0, "capacity": 1, "interval_s": 5}
    beats = [
        WorkerHeartbeat(worker="w1", broker="10.0.0.1:5672", timestamp=now, **fields),  # type: ignore[arg-type]
        WorkerHeartbeat(worker="w2", timestamp=now, **fields),  # type: ignore[arg-type]
    ]
    console = Console(width=200, record=True)
    console.print(render_table(beats, now))
    text = console.export_text()
    assert "NODE" in text
    assert "10.0.0.1:5672" in text
    console = Console(width=200, record=True)
    console.print(render_table(beats[1:], now))
    assert "NODE" not in console.export_text()
    same = [beats[0], beats[1].model_copy(update={"broker": "10.0.0.1:5672"})]
    console = Console(width=200, record=True)
    console.print(render_table(same, now))
    assert "NODE" not in console.export_text()  # one node for all: the URL given says it already


def test_a_heartbeat_without_a_node_is_encoded_as_before_and_one_with_a_node_carries_it() -> None:
    fields = {"host": "h", "pid": 1, "agents": ("a",), "in_flight": 0, "capacity": 1, "interval_s": 5}
    plain = json.loads(encode_heartbeat(WorkerHeartbeat(worker="w", **fields)).body)  # type: ignore[arg-type]
    assert "broker" not in plain
    beat = WorkerHeartbeat(worker="w", broker="n1:5672", **fields)  # type: ignore[arg-type]
    assert json.loads(encode_heartbeat(beat).body)["broker"] == "n1:5672"


def test_no_live_worker_exits_1_with_one_line() -> None:
    proc = run_cli("agents", "--amqp-url", "memory://", "--listen", "0.1")
    assert proc.returncode == 1
    assert "no live worker answered within 0.1s" in one_error_line(proc)


@pytest.mark.integration
async def test_lists_a_worker_process_on_rabbitmq(fleet: Fleet) -> None:
    worker = await fleet.start("Echo", "ChainC", args=("--concurrency", "5"))
    outcome = await run_cli_async("agents", "--json", "--listen", "1", "--amqp-url", fleet.amqp_url)
    assert outcome.code == 0, outcome.stderr
    beats = [WorkerHeartbeat.model_validate(json.loads(line)) for line in outcome.stdout.splitlines()]
    mine = [b for b in beats if b.worker == worker.worker_id]  # the broker is shared: others may be there
    assert len(mine) == 1
    assert mine[0].agents == (fleet.name("echo"), fleet.name("chain-c"))
    where = urlsplit(fleet.amqp_url)
    assert mine[0].broker == f"{where.hostname}:{where.port or 5672}"
    assert mine[0].capacity == 5
    assert mine[0].pid == worker.pid


@pytest.mark.integration
@pytest.mark.parametrize("width", [80, 120])
async def test_the_table_shows_backlog_llm_and_running_tasks_and_watch_refreshes(
    fleet: Fleet, width: int
) -> None:
    worker = await fleet.start("Echo", args=("--concurrency", "1"), env={"RELAYBUS_LLM_PROVIDER": "echo"})
    busy = {"sleep_s": 30, "announce": True}
    for _ in range(3):  # one runs, two wait in the queue
        sent = await run_cli_async(
            "submit",
            "--topic",
            fleet.topic("echo"),
            "--input",
            json.dumps(busy),
            "--amqp-url",
            fleet.amqp_url,
        )
        assert sent.code == 0, sent.stderr
    [started] = await fleet.wait_for(lambda e: e.routing_key.endswith(".started"), what="the first task")
    outcome = await run_cli_async(
        *("agents", "-v", "--watch", "--count", "2", "--listen", "1", "--amqp-url", fleet.amqp_url),
        env={"COLUMNS": str(width)},
    )
    assert outcome.code == 0, outcome.stderr
    assert_fits(outcome.stdout, width)
    tables = outcome.stdout.split("relaybus workers")[1:]
    assert len(tables) == 2  # --watch: a fresh table each time, --count bounds it
    rows = table_rows("relaybus workers" + tables[-1], "relaybus workers")
    mine = (
        rows[worker.worker_id.split(":")[0] + ":"] if worker.worker_id not in rows else rows[worker.worker_id]
    )
    assert mine["LOAD"] == "1/1"
    assert mine["QUEUED"] == "2"
    assert mine["LLM"] == "echo"
    assert mine["STATUS"] == "running"
    assert mine["LAST HEARTBEAT"].endswith("s ago")
    assert f"{worker.worker_id} runs: {started.payload['task_id']}" in outcome.stdout
