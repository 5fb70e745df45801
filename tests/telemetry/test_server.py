"""MetricsServer and worker_health: /metrics and /healthz over HTTP for a MemoryBus worker."""

from __future__ import annotations

import aiohttp
import pytest

from relaybus.agents import AgentWorker
from relaybus.bus.memory import MemoryBus
from relaybus.bus.rpc import ReplyRouter
from relaybus.exceptions import ConfigError, UsageError
from relaybus.messages import AgentTask
from relaybus.telemetry import MetricsServer, WorkerMetrics, worker_health

from ..agents import sample_agents as sa
from .scrape import sample


async def get(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, response.headers["Content-Type"], await response.text()


async def test_metrics_and_healthz_over_http_follow_the_worker_and_its_bus() -> None:
    metrics = WorkerMetrics()
    bus = MemoryBus()
    await bus.connect()
    worker = AgentWorker(bus, [sa.Echo()], metrics=metrics, grace_s=0)
    async with MetricsServer(metrics, lambda: worker_health(bus, worker)) as server:
        status, _, reason = await get(server.url + "/healthz")
        assert (status, reason.strip()) == (503, "the worker is not running (starting, draining or stopped)")
        router = ReplyRouter(bus)
        await router.start()
        try:
            await worker.start()
            assert await get(server.url + "/healthz") == (200, "text/plain; charset=utf-8", "ok\n")
            assert (await router.request(AgentTask(topic=sa.topic("echo")), timeout=10)).ok
            status, content_type, text = await get(server.url + "/metrics")
            assert status == 200
            assert content_type.startswith("text/plain; version=")
            assert sample(text, "relaybus_tasks_total", agent=sa.name("echo"), status="success") >= 1
            await bus.close()
            status, _, reason = await get(server.url + "/healthz")
            assert status == 503
            assert "broker connection (memory://) is down" in reason
        finally:
            await router.close()
            await worker.stop()


async def test_health_names_the_queues_without_a_consumer() -> None:
    async with MemoryBus() as bus:
        worker = AgentWorker(bus, [sa.Echo(), sa.Failing()], grace_s=0)
        async with worker:
            assert worker_health(bus, worker).ok
            assert worker.consuming == worker.queues
            worker._subscriptions.pop()  # as if the second agent's consumer were lost
            health = worker_health(bus, worker)
        assert not health.ok
        assert health.reason == f"no consumer on relaybus.agent.{sa.name('failing')}"
        assert worker.consuming == []


async def test_the_port_the_system_chose_is_reported_and_a_server_starts_once() -> None:
    server = MetricsServer(WorkerMetrics(), lambda: worker_health(MemoryBus(), None))  # type: ignore[arg-type]
    async with server:
        assert server.port > 0
        with pytest.raises(UsageError):
            await server.start()
    with pytest.raises(ConfigError):
        MetricsServer(WorkerMetrics(), lambda: None, port=70000)  # type: ignore[arg-type, return-value]
