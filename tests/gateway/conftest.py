"""A gateway on 127.0.0.1 in front of a real RabbitMQ, with an in-process worker hosting a test agent.

Every stack gets its own agent name (``gw-echo-<hex>``), so its queue is its own on a broker that other test
runs share; the queue is deleted at the end. The worker and the gateway each have their own connection, as
they would in their own processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from relaybus import AgentTask
from relaybus.agents import Agent, AgentContext, AgentWorker
from relaybus.bus.base import Bus, agent_queue_name
from relaybus.bus.connect import connect
from relaybus.gateway import Gateway, GatewayConfig
from relaybus.secrets import Secret

TOKEN = "test-token-0123456789abcdef"


class EchoAgent(Agent):
    """Answers ``{"echo": prompt, "input": input}`` (or the prompt alone with ``input["text"]``) after
    sleeping ``input["sleep_s"]``; raises with ``input["fail"]``. Records starts and cancellations. With
    ``input["say"]`` (a list of words) it streams them instead and answers them joined."""

    name = "gw-echo"
    topics = ("gw.echo",)

    def __init__(self) -> None:
        self.started: dict[str, asyncio.Event] = {}
        self.cancelled: dict[str, asyncio.Event] = {}

    def _event(self, table: dict[str, asyncio.Event], task_id: str) -> asyncio.Event:
        return table.setdefault(task_id, asyncio.Event())

    async def wait_started(self, task_id: str, timeout: float = 10) -> None:
        async with asyncio.timeout(timeout):
            await self._event(self.started, task_id).wait()

    async def wait_cancelled(self, task_id: str, timeout: float = 10) -> None:
        async with asyncio.timeout(timeout):
            await self._event(self.cancelled, task_id).wait()

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        self._event(self.started, str(task.id)).set()
        say = task.input.get("say")
        if isinstance(say, list):  # stream a progress line, then each word as model text, 50 ms apart
            await ctx.emit("progress", text="saying", data={"words": len(say)})
            for word in say:
                await ctx.emit("delta", text=str(word))
                await asyncio.sleep(0.05)
            return "".join(str(word) for word in say)
        delay = task.input.get("sleep_s", 0)
        try:
            if isinstance(delay, int | float) and delay > 0:
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            self._event(self.cancelled, str(task.id)).set()
            raise
        if task.input.get("fail"):
            raise ValueError(f"told to fail on {task.prompt!r}")
        if task.input.get("text"):
            return task.prompt
        return {"echo": task.prompt, "input": dict(task.input)}


@dataclass
class Stack:
    gateway: Gateway
    agent: EchoAgent
    bus: Bus
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.gateway.url

    @property
    def name(self) -> str:
        return self.agent.name

    @property
    def topic(self) -> str:
        return self.agent.topics[0]

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        kwargs.setdefault("timeout", 30)
        kwargs.setdefault("headers", self.headers)
        return httpx.AsyncClient(base_url=self.url, **kwargs)


@contextlib.asynccontextmanager
async def serve(
    amqp_url: str, *, tokens: tuple[str, ...] = (), concurrency: int = 64, **config: Any
) -> AsyncIterator[Stack]:
    """A worker hosting a fresh :class:`EchoAgent` and a gateway on a free port of 127.0.0.1."""
    suffix = uuid.uuid4().hex[:10]
    agent = EchoAgent()
    agent.name = f"gw-echo-{suffix}"
    agent.topics = (f"gw.echo-{suffix}",)
    worker_bus = await connect(amqp_url)
    gateway_bus = await connect(amqp_url)
    worker = AgentWorker(worker_bus, [agent], concurrency=concurrency, heartbeat_interval_s=1)
    gateway = Gateway(gateway_bus, GatewayConfig(port=0, tokens=tuple(Secret(t) for t in tokens), **config))
    try:
        async with worker, gateway:
            assert await gateway.directory.wait_for_agent(agent.name, 10), (
                "the gateway never heard the worker"
            )
            headers = {"Authorization": f"Bearer {tokens[0]}"} if tokens else {}
            yield Stack(gateway=gateway, agent=agent, bus=gateway_bus, headers=headers)
    finally:
        await worker_bus.delete_queue(agent_queue_name(agent.name))
        await gateway_bus.close()
        await worker_bus.close()


@pytest.fixture
async def stack(amqp_url: str) -> AsyncIterator[Stack]:
    """An open gateway (no token) with one echo agent."""
    async with serve(amqp_url) as ready:
        yield ready


@pytest.fixture
async def secured(amqp_url: str) -> AsyncIterator[Stack]:
    """A gateway that wants ``Authorization: Bearer <TOKEN>`` (its clients send it)."""
    async with serve(amqp_url, tokens=(TOKEN,)) as ready:
        yield ready
