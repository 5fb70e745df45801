"""``relaybus cancel TASK_ID``: the worker running the task stops it and its caller gets CANCELLED."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.agents import processes
from tests.agents.processes import Fleet

from .support import one_error_line, run_cli, run_cli_async, usage_error

fleet = processes.fleet


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


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


@pytest.fixture
def read_only_url(amqp_url: str) -> Iterator[str]:
    """A vhost and user of this test's own: the user may do anything but publish to the exchange
    ``relaybus`` (where tasks and cancel requests go)."""
    name = f"relaybus-cancel-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", name)
    try:
        rabbitmqctl("add_user", name, "pw-" + name)
        try:
            rabbitmqctl("set_permissions", "-p", name, name, ".*", "^(?!relaybus$).*", ".*")
            parts = urlsplit(amqp_url)
            netloc = f"{name}:pw-{name}@{parts.hostname}:{parts.port or 5672}"
            yield urlunsplit((parts.scheme, netloc, "/" + name, "", ""))
        finally:
            rabbitmqctl("delete_user", name)
    finally:
        rabbitmqctl("delete_vhost", name)


@pytest.mark.integration
def test_a_cancel_request_the_broker_refuses_is_an_error_naming_the_task(read_only_url: str) -> None:
    task_id = str(uuid.uuid4())
    proc = run_cli("cancel", task_id, "--amqp-url", read_only_url)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout == ""  # no "cancel requested" for a request that was not sent
    line = one_error_line(proc)
    assert f"the cancel request for {task_id} was not sent" in line
    assert "access refused" in line
