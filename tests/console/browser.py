"""A real stack for the browser tests: two in-process workers over AmqpBus (each its own connection and
worker id) hosting a fresh echo agent, a PostgreSQL store on a database of the test's own, a console on a
free port, and headless Debian chromium driven by Playwright (its own browser downloads are never used).

Everything runs on a vhost of the test's own, so ``relaybus.dead`` there holds only this test's letters.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import uuid
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from relaybus import AgentTask
from relaybus.agents import Agent, AgentContext, AgentWorker
from relaybus.bus.base import Bus
from relaybus.bus.connect import connect
from relaybus.console import AmqpQueueProbe, Console, ConsoleConfig
from relaybus.secrets import Secret
from relaybus.state import PlannedTask, StateStore, TaskEventKind, TaskUpdate, store_from_url

from .support import TOKEN

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CLOSE_TIMEOUT_S = 30.0


class EchoAgent(Agent):
    name = "console-echo"
    topics = ("console.echo",)

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        delay = task.input.get("sleep_s", 0)
        if isinstance(delay, int | float) and delay > 0:
            await asyncio.sleep(delay)  # long enough to be cancelled from the page
        return {"echo": task.prompt}


@dataclass
class Browser:
    page: Any
    """A Playwright ``Page`` (async API)."""
    dialogs: list[str]
    """The text of every alert/confirm the page opened (a script that ran would open one)."""


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A headless Debian chromium page; fails the test with the fix when chromium is not installed."""
    from playwright.async_api import async_playwright

    if not shutil.which("chromium"):
        pytest.fail("the browser tests need Debian's chromium: apt-get install -y chromium", pytrace=False)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            dialogs: list[str] = []

            async def on_dialog(dialog: Any) -> None:
                dialogs.append(dialog.message)
                await dialog.dismiss()

            page.on("dialog", on_dialog)
            page.set_default_timeout(20_000)
            yield Browser(page, dialogs)
        finally:
            # Bounded: a browser that does not close is not the console's fault, and leaving the Playwright
            # context stops its driver (and the browser with it) anyway.
            try:
                await asyncio.wait_for(browser.close(), CLOSE_TIMEOUT_S)
            except TimeoutError:
                warnings.warn(f"chromium did not close within {CLOSE_TIMEOUT_S:g} s", stacklevel=1)


@dataclass
class Fleet:
    console: Console
    console_bus: Bus
    store: StateStore
    agent: str
    topic: str
    workers: list[AgentWorker]
    worker_ids: list[str]


@contextlib.asynccontextmanager
async def fleet(amqp_url: str, postgres_url: str, *, workers: int = 2) -> AsyncIterator[Fleet]:
    suffix = uuid.uuid4().hex[:10]
    agent_name, topic = f"console-echo-{suffix}", f"console.echo-{suffix}"
    buses = [await connect(amqp_url) for _ in range(workers + 1)]
    console_bus = buses[-1]
    hosted = []
    ids = [f"console-test-{suffix}-w{n}" for n in range(workers)]
    for bus, worker_id in zip(buses, ids, strict=False):
        agent = EchoAgent()
        agent.name, agent.topics = agent_name, (topic,)
        hosted.append(AgentWorker(bus, [agent], heartbeat_interval_s=0.5, worker_id=worker_id))
    store = store_from_url(postgres_url)
    config = ConsoleConfig(
        port=0, operator_token=Secret(TOKEN), push_s=0.3, refresh_s=1.0, sample_s=0.5, dead_letter_idle_s=0.3
    )
    try:
        async with contextlib.AsyncExitStack() as stack:
            for worker in hosted:
                await stack.enter_async_context(worker)
            await stack.enter_async_context(store)
            console = Console(console_bus, config, store=store, probe=AmqpQueueProbe(amqp_url))
            await stack.enter_async_context(console)
            yield Fleet(console, console_bus, store, agent_name, topic, hosted, ids)
    finally:
        for bus in buses:
            await bus.close()


# A run the orchestrator has recorded as started (every task published), for a test that then runs one of
# its tasks alone and acts on it from the page.
async def record_plan(store: StateStore, run_id: str, name: str, tasks: list[AgentTask]) -> None:
    """What the orchestrator records when a plan run starts: the run with its tasks, each published."""
    await store.record_run(run_id, name, [PlannedTask.of(task) for task in tasks])
    await store.task_events(run_id, [TaskUpdate(task_id=t.id, kind=TaskEventKind.PUBLISHED) for t in tasks])
