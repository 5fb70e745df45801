"""``relaybus dlq``: a person can see why messages died, send them back and drop them, from the shell."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from relaybus.bus.amqp import AmqpBus
from relaybus.bus.base import SCHEMA_HEADER, Delivery, OutgoingMessage
from relaybus.bus.codec import encode_task
from relaybus.messages import AgentTask

from .support import run_cli

pytestmark = pytest.mark.integration


def relaybus(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, env={"RELAYBUS_AMQP_URL": url})


async def _make_dead_letters(url: str) -> AgentTask:
    """One refused body (id 'junk') and one task dead-lettered by its consumer; returns the task."""
    task = AgentTask(topic="dlqcli.work", prompt="retry me")
    async with AmqpBus(url) as bus:
        await bus.declare_queue("dlqcli", bindings=["task.dlqcli.#"])
        done = asyncio.Event()
        count = 0

        async def handler(delivery: Delivery) -> None:
            nonlocal count
            reason = "boom" if delivery.message_id != "junk" else "not JSON (test)"
            await delivery.dead_letter(reason)
            count += 1
            if count == 2:
                done.set()

        sub = await bus.consume("dlqcli", handler)
        await bus.publish(
            OutgoingMessage(
                body=b"junk", routing_key="task.dlqcli.x", message_id="junk", headers={SCHEMA_HEADER: 1}
            )
        )
        await bus.publish(encode_task(task, reply_to=None))
        await asyncio.wait_for(done.wait(), 10)
        await sub.cancel()
    return task


async def _drain(url: str, queue: str) -> list[bytes]:
    bodies: list[bytes] = []
    async with AmqpBus(url) as bus:

        async def handler(delivery: Delivery) -> None:
            bodies.append(delivery.body)
            await delivery.ack()

        sub = await bus.consume(queue, handler)
        await asyncio.sleep(1.0)
        await sub.cancel()
    return bodies


async def test_list_replay_purge(amqp_vhost_url: str, tmp_path: Path) -> None:
    task = await _make_dead_letters(amqp_vhost_url)

    listed = await asyncio.to_thread(relaybus, "dlq", "list", "--json", "--idle", "0.5", url=amqp_vhost_url)
    assert listed.returncode == 0, listed.stderr
    rows = {row["message_id"]: row for row in map(json.loads, listed.stdout.splitlines())}
    assert rows[str(task.id)]["reason"] == "boom"
    assert rows[str(task.id)]["queue"] == "dlqcli"
    assert rows["junk"]["reason"] == "not JSON (test)"

    table = await asyncio.to_thread(relaybus, "dlq", "list", "--idle", "0.5", url=amqp_vhost_url)
    assert "boom" in table.stdout
    assert "2 dead letter(s)" in table.stdout

    fixed = tmp_path / "fixed.json"
    fixed.write_bytes(encode_task(AgentTask(topic="dlqcli.work", prompt="fixed"), reply_to=None).body)
    replay = await asyncio.to_thread(
        relaybus, "dlq", "replay", "--id", "junk", "--body", str(fixed), "--idle", "0.5", url=amqp_vhost_url
    )
    assert replay.returncode == 0, replay.stderr
    assert "replayed junk" in replay.stdout
    bodies = await _drain(amqp_vhost_url, "dlqcli")
    assert len(bodies) == 1
    assert json.loads(bodies[0])["prompt"] == "fixed"

    refused = await asyncio.to_thread(relaybus, "dlq", "purge", url=amqp_vhost_url)
    assert refused.returncode == 2
    assert "--yes" in refused.stderr
    purged = await asyncio.to_thread(relaybus, "dlq", "purge", "--yes", url=amqp_vhost_url)
    assert purged.returncode == 0, purged.stderr
    assert "purged 1 dead letter(s)" in purged.stdout


def test_replay_needs_a_selection(amqp_url: str) -> None:
    result = relaybus("dlq", "replay", url=amqp_url)
    assert result.returncode == 2
    assert "--id MESSAGE_ID" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_broker_is_one_line() -> None:
    result = relaybus("dlq", "list", url="amqp://guest:hunter2@127.0.0.1:1/")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert "hunter2" not in result.stderr
    assert "127.0.0.1:1" in result.stderr
