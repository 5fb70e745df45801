"""``relaybus dlq``: a person can see why messages died, send them back and drop them, from the shell."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from relaybus.agents import Agent, AgentContext, AgentWorker
from relaybus.bus.amqp import AmqpBus
from relaybus.bus.base import SCHEMA_HEADER, Delivery, OutgoingMessage
from relaybus.bus.codec import encode_task
from relaybus.dlq import list_dead_letters
from relaybus.messages import AgentTask
from relaybus.testing.agents import FakeExecutor

from .support import assert_fits, run_cli

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


class Fixer(Agent):
    name = "dlq-fixer"
    topics = ("dlqfix.#",)

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        return {"fixed": task.prompt}


async def _dead_result_and_dead_task(bus: AmqpBus) -> AgentTask:
    """Through a real worker: a result whose named caller is gone, and a task body without an id (message id
    'broken-1'); returns the task whose result died."""
    late = AgentTask(topic="dlqfix.x", prompt="late")
    await bus.publish(encode_task(late, reply_to="relaybus.reply.nightly-dlq"))
    broken = OutgoingMessage(
        body=b'{"topic": "dlqfix.x"}',
        routing_key="agent.dlq-fixer",
        message_id="broken-1",
        headers={SCHEMA_HEADER: 1},
    )
    await bus.publish(broken)
    return late


async def _letters(bus: AmqpBus, count: int) -> None:
    async with asyncio.timeout(20):
        while len(await list_dead_letters(bus, idle_s=0.3)) < count:
            await asyncio.sleep(0.2)


async def test_show_prints_one_whole_letter_with_its_age_and_the_hint_for_a_dead_result(
    amqp_vhost_url: str,
) -> None:
    async with AmqpBus(amqp_vhost_url) as bus, AgentWorker(bus, [Fixer()], executor=FakeExecutor()):
        late = await _dead_result_and_dead_task(bus)
        await _letters(bus, 2)
    letter_id = f"result-{late.id}"
    shown = await asyncio.to_thread(relaybus, "dlq", "show", letter_id, "--idle", "0.5", url=amqp_vhost_url)
    assert shown.returncode == 0, shown.stderr
    assert shown.stderr == ""  # not a word about the other letter
    lines = shown.stdout.splitlines()
    assert f"message id: {letter_id}" in lines
    assert "queue: relaybus.reply.nightly-dlq" in lines
    assert any(line.startswith("hint: a result for the orchestrator named 'nightly-dlq'") for line in lines)
    assert "relaybus run PLAN --name nightly-dlq" in shown.stdout
    assert '"fixed": "late"' in shown.stdout  # the body in full, as JSON
    as_json = await asyncio.to_thread(
        relaybus, "dlq", "show", letter_id, "--json", "--idle", "0.5", url=amqp_vhost_url
    )
    document = json.loads(as_json.stdout)
    assert 0 <= document["age_s"] < 120
    assert json.loads(document["body"])["task_id"] == str(late.id)
    missing = await asyncio.to_thread(relaybus, "dlq", "show", "nope", "--idle", "0.5", url=amqp_vhost_url)
    assert missing.returncode == 1
    assert "no dead letter 'nope'" in missing.stderr


@pytest.mark.parametrize("width", [80, 120, None])
async def test_list_has_an_age_no_redundant_columns_and_does_not_wrap_when_piped(
    amqp_vhost_url: str, width: int | None
) -> None:
    async with AmqpBus(amqp_vhost_url) as bus, AgentWorker(bus, [Fixer()], executor=FakeExecutor()):
        await _dead_result_and_dead_task(bus)
        await _letters(bus, 2)
    env = {"RELAYBUS_AMQP_URL": amqp_vhost_url, **({"COLUMNS": str(width)} if width else {})}
    listed = await asyncio.to_thread(run_cli, "dlq", "list", "--idle", "0.5", env=env)
    assert listed.returncode == 0, listed.stderr
    assert listed.stderr == ""
    header = next(line for line in listed.stdout.splitlines() if "message id" in line)
    assert [cell.strip() for cell in header.split("┃")[1:-1]] == ["message id", "age", "from queue", "reason"]
    if width is not None:
        assert_fits(listed.stdout, width)
    else:  # piped without COLUMNS: one line per letter, the whole reason on it
        rows = [line for line in listed.stdout.splitlines() if line.startswith("│")]
        assert len(rows) == 2
        assert any(
            "before the result arrived; replay it once the caller's queue exists again" in r for r in rows
        )
        assert all(r.split("│")[2].strip().endswith("s") for r in rows)  # an age in seconds


async def test_replay_with_a_fixed_body_reports_the_tasks_outcome_and_nothing_else(
    amqp_vhost_url: str, tmp_path: Path
) -> None:
    fixed = AgentTask(topic="dlqfix.x", prompt="now with an id")
    body = tmp_path / "fixed.json"
    body.write_text(fixed.model_dump_json())
    async with AmqpBus(amqp_vhost_url) as bus, AgentWorker(bus, [Fixer()], executor=FakeExecutor()):
        await _dead_result_and_dead_task(bus)
        await _letters(bus, 2)
        replay = await asyncio.to_thread(
            relaybus,
            *("dlq", "replay", "--id", "broken-1", "--body", str(body), "--wait", "20", "--idle", "0.5"),
            url=amqp_vhost_url,
        )
        left = await list_dead_letters(bus, idle_s=0.5)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert replay.stderr == ""  # no warnings about the other letter
    assert replay.stdout.splitlines() == ["replayed broken-1", f"result {fixed.id}: success"]
    # the fixed task ran (its id is now the message id): it did not die again; the dead result is still there
    assert [letter.message_id.startswith("result-") for letter in left if letter.message_id] == [True]
