"""``relaybus cancel TASK_ID``: the worker running the task stops it and its caller gets CANCELLED."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from tests.agents import processes
from tests.agents.processes import Fleet

from .support import run_cli, run_cli_async, usage_error

fleet = processes.fleet


def test_a_task_id_that_is_not_a_uuid_shows_the_usage_before_connecting() -> None:
    proc = run_cli("cancel", "not-an-id", "--amqp-url", "amqp://guest:guest@127.0.0.1:1/")
    assert "'not-an-id' is not a task id" in usage_error(proc, "cancel")


@pytest.mark.integration
async def test_cancel_stops_a_running_task_and_its_caller_gets_cancelled(fleet: Fleet) -> None:
    await fleet.start("Echo")
    waiting = asyncio.create_task(
        run_cli_async(
            *("submit", "--topic", fleet.topic("echo"), "--input", '{"sleep_s": 60, "announce": true}'),
            *("--wait", "--timeout", "90", "--amqp-url", fleet.amqp_url),
            timeout=90,
        )
    )
    started = await fleet.wait_for(
        lambda e: e.routing_key == f"event.{fleet.topic('started')}", what="the task to start"
    )
    task_id = started[0].payload["task_id"]
    cancel = await run_cli_async("cancel", task_id, "--reason", "not needed", "--amqp-url", fleet.amqp_url)
    assert cancel.code == 0, cancel.stderr
    assert cancel.stdout.strip() == f"cancel requested for {task_id}"
    assert cancel.stderr == ""  # a one-shot command: no connect / close log lines around its output
    async with asyncio.timeout(30):
        submitted = await waiting
    assert submitted.code == 1
    result = json.loads(submitted.stdout)
    assert result["task_id"] == task_id
    assert result["status"] == "cancelled"
    assert "not needed" in result["error"]["message"]


@pytest.mark.integration
async def test_at_info_level_the_connection_is_logged(amqp_url: str) -> None:
    # The other side of the quiet default above: the lines exist, WARNING is what hides them.
    loud = await run_cli_async("cancel", str(uuid.uuid4()), "--log-level", "INFO", "--amqp-url", amqp_url)
    assert loud.code == 0, loud.stderr
    assert "amqp_connected" in loud.stderr
