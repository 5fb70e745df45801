"""``relaybus submit``: bad flags show its usage (exit 2); on RabbitMQ it publishes, waits, reports JSON."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import uuid

import pytest

from relaybus.bus.base import Delivery
from relaybus.bus.connect import connect
from relaybus.telemetry.trace_context import trace_id_of
from tests.agents import processes
from tests.agents.processes import Fleet
from tests.eventually import eventually

from .support import Outcome, run_cli, run_cli_async, usage_error

fleet = processes.fleet


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--input", "{not json"], "argument --input: not valid JSON"),
        (["--input", "[1, 2]"], "argument --input: must be a JSON object, got list"),
        (["--topic", "has space"], "--topic: Value error, topic must be dot-separated words"),
        (["--agent", "a b"], "--agent: Value error"),
        (["--priority", "10"], "argument --priority: must be a whole number from 0 to 9, got '10'"),
        (["--priority", "high"], "argument --priority: must be a whole number from 0 to 9"),
        (["--prompt", "no topic"], "give --topic TOPIC (or --agent NAME to address one agent)"),
    ],
)
def test_bad_flags_show_the_usage_and_exit_2_before_connecting(args: list[str], expected: str) -> None:
    flags = args if "--topic" in args or "--prompt" in args else [*args, "--topic", "code.review"]
    proc = run_cli("submit", *flags, "--amqp-url", "amqp://guest:guest@127.0.0.1:1/")
    assert expected in usage_error(proc, "submit")


async def submit(fleet: Fleet, *args: str) -> Outcome:
    return await run_cli_async("submit", *args, "--amqp-url", fleet.amqp_url)


@pytest.mark.integration
async def test_wait_prints_the_result_as_json_and_exits_0(fleet: Fleet) -> None:
    worker = await fleet.start("Echo")
    outcome = await submit(fleet, "--topic", fleet.topic("echo"), "--prompt", "ping", "--wait")
    assert outcome.code == 0, outcome.stderr
    result = json.loads(outcome.stdout)
    assert result["status"] == "success"
    assert result["output"] == {"echo": "ping"}
    assert result["worker"] == worker.worker_id
    # the trace id on stderr is the one the worker's log line of the task carries
    found = re.search(rf"task {result['task_id']} trace_id=([0-9a-f]{{32}})", outcome.stderr)
    assert found is not None, outcome.stderr
    await eventually(lambda: '"task_done"' in worker.log())
    done = [json.loads(line) for line in worker.log().splitlines() if '"task_done"' in line]
    assert [line["trace_id"] for line in done] == [found.group(1)]


@pytest.mark.integration
async def test_wait_on_a_failing_task_prints_it_and_exits_1(fleet: Fleet) -> None:
    await fleet.start("Failing")
    outcome = await submit(fleet, "--topic", fleet.topic("fail"), "--prompt", "boom", "--wait")
    assert outcome.code == 1
    result = json.loads(outcome.stdout)
    assert result["status"] == "failure"
    assert result["error"]["type"] == "ValueError"


@pytest.mark.integration
async def test_timeout_reaches_the_worker_and_ends_the_task(fleet: Fleet) -> None:
    await fleet.start("Echo")
    outcome = await submit(
        fleet,
        "--topic",
        fleet.topic("echo"),
        "--input",
        json.dumps({"sleep_s": 30}),
        "--wait",
        "--timeout",
        "1",
    )
    assert outcome.code == 1
    result = json.loads(outcome.stdout)
    assert result["status"] == "timeout"
    assert result["error"]["type"] == "DeadlineExceeded"  # the worker's own verdict, not the waiter's


@pytest.mark.integration
async def test_without_wait_it_prints_the_task_id_and_the_worker_runs_it(fleet: Fleet) -> None:
    worker = await fleet.start("Echo")
    # --agent alone: no --topic needed to address one agent
    outcome = await submit(fleet, "--agent", fleet.name("echo"), "--input", '{"announce": true}')
    assert outcome.code == 0, outcome.stderr
    printed = json.loads(outcome.stdout)
    # what the README and `relaybus submit --help` promise
    assert set(printed) == {"task_id", "routing_key", "trace_id"}
    assert printed["routing_key"] == f"agent.{fleet.name('echo')}"
    key = f"event.{fleet.topic('started')}"
    await fleet.wait_for(
        lambda e: e.routing_key == key and e.payload["task_id"] == printed["task_id"],
        what="the submitted task to start",
        process=worker,
    )
    assert worker.proc.returncode is None


@pytest.mark.integration
async def test_priority_and_the_agents_name_as_topic_travel_in_the_task(amqp_url: str) -> None:
    name = f"cli-submit-{uuid.uuid4().hex[:8]}"
    bodies: list[dict[str, object]] = []
    traces: list[str | None] = []
    async with await connect(amqp_url) as bus:
        queue = f"relaybus.test.{name}"
        await bus.declare_queue(queue, bindings=(f"agent.{name}",), durable=False)
        try:

            async def take(delivery: Delivery) -> None:
                bodies.append(json.loads(delivery.body))
                traces.append(trace_id_of(delivery.headers))
                await delivery.ack()

            await bus.consume(queue, take)
            outcome = await run_cli_async(
                "submit", "--agent", name, "--priority", "7", "--amqp-url", amqp_url
            )
            assert outcome.code == 0, outcome.stderr
            async with asyncio.timeout(10):
                while not bodies:
                    await asyncio.sleep(0.05)
        finally:
            await bus.delete_queue(queue)
    printed = json.loads(outcome.stdout)
    assert bodies[0]["id"] == printed["task_id"]
    assert traces == [printed["trace_id"]]  # the task went out in the trace the command printed
    assert bodies[0]["priority"] == 7
    assert bodies[0]["agent"] == name
    assert bodies[0]["topic"] == name


@pytest.mark.integration
async def test_a_topic_nobody_serves_is_a_rejected_result_on_stdout_and_one_line(fleet: Fleet) -> None:
    outcome = await submit(fleet, "--topic", fleet.topic("nobody.serves.this"), "--wait")
    assert outcome.code == 1
    result = json.loads(outcome.stdout)  # a script reads the same JSON whatever happened
    assert result["status"] == "rejected"
    assert result["error"]["type"] == "NoRouteError"
    lines = [line for line in outcome.stderr.splitlines() if line.startswith("relaybus: error: ")]
    assert len(lines) == 1
    assert f"task.{fleet.topic('nobody.serves.this')}" in lines[0]
    assert "Traceback" not in outcome.stderr


@pytest.mark.integration
async def test_no_result_in_time_is_a_timeout_result_naming_the_timeout_it_used(fleet: Fleet) -> None:
    worker = await fleet.start("Echo")  # declares the agent's queue, then stops: the task waits there
    worker.signal(signal.SIGTERM)
    assert await worker.wait() == 0
    outcome = await submit(fleet, "--agent", fleet.name("echo"), "--wait", "--timeout", "1.5")
    assert outcome.code == 1
    result = json.loads(outcome.stdout)
    assert result["status"] == "timeout"
    assert result["error"]["type"] == "ReplyTimeout"
    assert "within 1.5s (--timeout 1.5)" in result["error"]["message"]
    assert "within 1.5s (--timeout 1.5)" in outcome.stderr
