"""The console in a real headless browser (Debian chromium via Playwright) against real workers on
RabbitMQ and a PostgreSQL store: the fleet view follows the workers live, a plan run shows with its tasks,
a dead letter is corrected and replayed from the page and its task succeeds, a prompt with ``<script>`` is
shown as text, and an action without the operator token is refused.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import pytest

from relaybus import AgentTask, ProjectOrchestrator
from relaybus.bus.base import OutgoingMessage, agent_queue_name
from relaybus.bus.codec import SCHEMA_HEADER
from relaybus.dlq import list_dead_letters
from relaybus.messages import ExecutionResult, ExecutionStatus
from tests.eventually import eventually

from .browser import Browser, Fleet, chromium, fleet, record_plan
from .support import TOKEN

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.slow]

SCRIPT = "<script>alert('owned')</script>"


@pytest.fixture
async def stack(amqp_vhost_url: str, postgres_database_url: str) -> AsyncIterator[Fleet]:
    async with fleet(amqp_vhost_url, postgres_database_url) as made:
        yield made


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as made:
        yield made


async def worker_rows(browser: Browser) -> list[str]:
    rows = browser.page.locator("#workers tr[data-worker]")
    found: list[str] = await rows.evaluate_all("rows => rows.map(row => row.dataset.worker)")
    return found  # in one go: the live updates replace the rows between two reads


async def test_the_fleet_view_shows_both_workers_and_follows_one_stopping(
    stack: Fleet, browser: Browser
) -> None:
    page = browser.page
    await page.goto(stack.console.url + "/fleet")

    async def both() -> bool:
        return sorted(await worker_rows(browser)) == sorted(stack.worker_ids)

    await eventually(both, what="both workers on the page")
    agent_row = page.locator(f'#agents tr[data-agent="{stack.agent}"] td')
    await eventually(lambda: agent_row.nth(5).inner_text(), what="the agent's consumers")
    assert await agent_row.nth(1).inner_text() == "2"  # workers hosting it
    assert await agent_row.nth(3).inner_text() == agent_queue_name(stack.agent)
    assert await agent_row.nth(5).inner_text() == "2"  # consumers, from the broker
    updates_before = int(await page.locator("#live").get_attribute("data-updates") or 0)

    await stack.workers[0].__aexit__(None, None, None)  # the worker says it stopped

    async def one_left() -> bool:
        return await worker_rows(browser) == [stack.worker_ids[1]]

    await eventually(one_left, what="the stopped worker gone from the page (no reload)")
    assert int(await page.locator("#live").get_attribute("data-updates") or 0) > updates_before
    assert browser.dialogs == []


async def test_a_plan_run_appears_with_its_tasks(stack: Fleet, browser: Browser) -> None:
    first = AgentTask(topic=stack.topic, prompt="draft")
    second = AgentTask(topic=stack.topic, prompt="review", depends_on=[first.id])
    run_id = f"console-run-{uuid.uuid4().hex[:8]}"
    # A real plan run, recorded by the orchestrator into the store the console reads.
    async with ProjectOrchestrator(stack.console_bus, state=stack.store) as orchestrator:
        result = await orchestrator.run_plan([first, second], run_id=run_id)
    assert result.ok
    detail = await stack.store.run(run_id)
    assert detail is not None
    page = browser.page
    await page.goto(stack.console.url + "/work")
    row = page.locator(f'#runs tr[data-run="{run_id}"]')
    assert "success 2" in await row.inner_text()
    await row.locator("a").click()
    await page.wait_for_url(f"**/runs/{run_id}")
    tasks = page.locator("#tasks tr[data-task]")
    assert [await tasks.nth(n).get_attribute("data-task") for n in range(2)] == [
        str(first.id),
        str(second.id),
    ]
    for n in range(2):
        cells = tasks.nth(n).locator("td")
        assert await cells.nth(3).inner_text() == "success"
        assert await cells.nth(4).inner_text() in stack.worker_ids
    assert await page.locator("svg.dag rect").count() == 2
    assert await page.locator("svg.dag line.edge").count() == 1
    await tasks.nth(0).locator("a").first.click()
    await page.wait_for_url(f"**/runs/{run_id}/tasks/{first.id}")
    trace_id = detail.tasks[0].trace_id
    assert trace_id is not None
    assert await page.locator("#trace-id").inner_text() == trace_id  # the one its message carried

    async def charted() -> bool:
        await page.goto(stack.console.url + "/work")
        return "success 2" in await page.locator("#live .summary").inner_text()

    await eventually(charted, what="the two tasks in the Work chart")


async def _dead_task(stack: Fleet, reply_queue: str) -> str:
    """Publish a task the worker must refuse (its prompt is not a string) and wait until it is dead."""
    task_id = str(uuid.uuid4())
    body = {"id": task_id, "topic": stack.topic, "agent": stack.agent, "prompt": {"text": SCRIPT}}
    await stack.console_bus.publish(
        OutgoingMessage(
            body=json.dumps(body).encode(),
            routing_key=f"agent.{stack.agent}",
            message_id=task_id,
            correlation_id=task_id,
            reply_to=reply_queue,
            headers={SCHEMA_HEADER: "1"},
            mandatory=True,
        )
    )

    async def dead() -> bool:
        letters = await list_dead_letters(stack.console_bus, limit=50, idle_s=0.2)
        return any(letter.message_id == task_id for letter in letters)

    await eventually(dead, what="the refused task in relaybus.dead")
    return task_id


async def test_a_dead_letter_is_corrected_and_replayed_from_the_page_and_its_task_succeeds(
    stack: Fleet, browser: Browser
) -> None:
    reply_queue = f"relaybus.reply.console-test-{uuid.uuid4().hex[:8]}"
    results: asyncio.Queue[ExecutionResult] = asyncio.Queue()

    async def on_reply(delivery: object) -> None:
        results.put_nowait(ExecutionResult.model_validate_json(delivery.body))  # type: ignore[attr-defined]
        await delivery.ack()  # type: ignore[attr-defined]

    await stack.console_bus.declare_queue(reply_queue, durable=False)
    await stack.console_bus.consume(reply_queue, on_reply)
    task_id = await _dead_task(stack, reply_queue)
    while not results.empty():  # a worker may answer a refused task at once (REJECTED)
        assert results.get_nowait().status is not ExecutionStatus.SUCCESS

    page = browser.page
    fixed = {"id": task_id, "topic": stack.topic, "agent": stack.agent, "prompt": f"fixed {SCRIPT}"}

    async def ask_to_replay() -> None:
        await page.goto(stack.console.url + "/dead")
        row = page.locator(f'#letters tr[data-letter="{task_id}"]')
        assert stack.agent in await row.inner_text()
        await row.locator("a").click()
        await page.wait_for_url(f"**/dead/{task_id}")
        assert SCRIPT in await page.locator("#body").inner_text()  # shown as text, not run
        assert await page.locator("script").count() == 1  # only the console's own
        await page.locator("textarea[name=body]").fill(json.dumps(fixed))
        await page.get_by_role("button", name="Replay…").click()
        assert "Replay dead letter" in await page.locator("#question").inner_text()
        assert "fixed" in await page.locator("main pre").inner_text()

    await ask_to_replay()
    async with page.expect_response(lambda r: r.request.method == "POST") as refused:
        await page.locator("#confirm").click()  # without the token
    assert (await refused.value).status == 403
    assert "operator token" in await page.locator("body").inner_text()
    assert results.empty()

    await ask_to_replay()  # the letter is still there
    await page.locator("input[name=token]").fill(TOKEN)
    await page.locator("#confirm").click()
    assert f"Replayed {task_id}" in await page.locator("#message").inner_text()

    result = await asyncio.wait_for(results.get(), timeout=20)
    assert result.task_id == uuid.UUID(task_id)
    assert result.status is ExecutionStatus.SUCCESS
    assert result.output == {"echo": f"fixed {SCRIPT}"}
    assert browser.dialogs == []


async def test_the_dead_letters_are_purged_from_the_page_after_confirmation(
    stack: Fleet, browser: Browser
) -> None:
    reply_queue = f"relaybus.reply.console-test-{uuid.uuid4().hex[:8]}"
    await stack.console_bus.declare_queue(reply_queue, durable=False)
    task_id = await _dead_task(stack, reply_queue)
    page = browser.page
    await page.goto(stack.console.url + "/dead")
    await page.get_by_role("button", name="Purge every dead letter…").click()
    await page.locator("input[name=token]").fill(TOKEN)
    await page.locator("#confirm").click()
    assert "Purged" in await page.locator("#message").inner_text()
    letters = await list_dead_letters(stack.console_bus, limit=50, idle_s=0.2)
    assert task_id not in [letter.message_id for letter in letters]


async def test_a_running_task_is_cancelled_from_its_page(stack: Fleet, browser: Browser) -> None:
    slow = AgentTask(topic=stack.topic, prompt="slow", input={"sleep_s": 60})
    run_id = f"console-run-{uuid.uuid4().hex[:8]}"
    await record_plan(stack.store, run_id, "console-slow", [slow])
    async with ProjectOrchestrator(stack.console_bus) as orchestrator:
        running = asyncio.create_task(orchestrator.execute_task(slow))

        async def started() -> bool:
            return sum(w.in_flight for w in stack.console.context.directory.workers()) == 1

        await eventually(started, what="the slow task running on a worker")
        page = browser.page
        await page.goto(f"{stack.console.url}/runs/{run_id}/tasks/{slow.id}")
        await page.get_by_role("button", name="Cancel this task…").click()
        assert str(slow.id) in await page.locator("#question").inner_text()
        await page.locator("input[name=token]").fill(TOKEN)
        await page.locator("#confirm").click()
        assert "Cancel requested" in await page.locator("#message").inner_text()
        result = await asyncio.wait_for(running, timeout=30)
    assert result.status is ExecutionStatus.CANCELLED
    assert "console" in (result.error.message if result.error else "")
