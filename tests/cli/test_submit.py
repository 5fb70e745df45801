"""``relaybus submit``: bad flags give one line (exit 2); on RabbitMQ it publishes, waits, and reports."""

from __future__ import annotations

import json

import pytest

from tests.agents import processes
from tests.agents.processes import Fleet

from .support import Outcome, one_error_line, run_cli, run_cli_async

fleet = processes.fleet


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--input", "{not json"], "--input is not valid JSON"),
        (["--input", "[1, 2]"], "--input must be a JSON object, got list"),
        (["--topic", "has space"], "--topic: Value error, topic must be dot-separated words"),
        (["--agent", "a b"], "--agent: Value error"),
    ],
)
def test_bad_flags_give_one_line_and_exit_2_before_connecting(args: list[str], expected: str) -> None:
    flags = args if "--topic" in args else [*args, "--topic", "code.review"]
    proc = run_cli("submit", *flags, "--amqp-url", "amqp://guest:guest@127.0.0.1:1/")
    assert proc.returncode == 2
    assert expected in one_error_line(proc)


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
    outcome = await submit(
        fleet, "--agent", fleet.name("echo"), "--topic", "any.topic", "--input", '{"announce": true}'
    )
    assert outcome.code == 0, outcome.stderr
    printed = json.loads(outcome.stdout)
    assert printed["routing_key"] == f"agent.{fleet.name('echo')}"
    key = f"event.{fleet.topic('started')}"
    await fleet.wait_for(
        lambda e: e.routing_key == key and e.payload["task_id"] == printed["task_id"],
        what="the submitted task to start",
        process=worker,
    )
    assert worker.proc.returncode is None


@pytest.mark.integration
async def test_a_topic_nobody_serves_gives_one_line_and_exit_1(fleet: Fleet) -> None:
    outcome = await submit(fleet, "--topic", fleet.topic("nobody.serves.this"), "--wait")
    assert outcome.code == 1
    lines = [line for line in outcome.stderr.splitlines() if line.startswith("relaybus: error: ")]
    assert len(lines) == 1
    assert f"task.{fleet.topic('nobody.serves.this')}" in lines[0]
    assert "Traceback" not in outcome.stderr
