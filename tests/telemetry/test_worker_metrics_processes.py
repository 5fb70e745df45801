"""``relaybus worker --metrics-port`` as a real process on RabbitMQ: /metrics matches the tasks it ran, and
/healthz turns 503 when the broker closes its connection, then 200 once it has reconnected."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket

import aiohttp
import psutil
import pytest

from relaybus.bus.rpc import ReplyRouter
from relaybus.messages import AgentTask, ExecutionStatus
from relaybus.testing.fake_llm import FakeLLMServer

from ..agents import processes
from ..agents.processes import Fleet
from ..bus.amqp_support import rabbitmqctl
from .scrape import sample

pytestmark = [pytest.mark.integration, pytest.mark.slow]
fleet = processes.fleet


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def wait_for_health(url: str, status: int, timeout: float = 30) -> str:
    """Poll ``url`` until it answers ``status``; its body."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                got, body = await get(url)
            except aiohttp.ClientConnectionError:
                got, body = 0, ""
            if got == status:
                return body
            await asyncio.sleep(0.02)


async def probe(session: aiohttp.ClientSession, url: str, seen: list[tuple[int, str]]) -> None:
    """GET ``url`` again and again, appending each (status, body) to ``seen``."""
    while True:
        async with session.get(url) as response:
            seen.append((response.status, await response.text()))


async def broker_connection_of(pid: int) -> tuple[str, str]:
    """The RabbitMQ connection (name ``client:port -> server:port``, and its Erlang pid, what
    ``close_connection`` takes) of process ``pid``'s one broker connection, named "relaybus" by the client."""
    ports = {
        c.laddr.port
        for c in psutil.Process(pid).net_connections(kind="tcp")
        if c.raddr and c.raddr.port == 5672 and c.status == psutil.CONN_ESTABLISHED
    }
    assert len(ports) == 1, f"worker {pid} holds {len(ports)} broker connections"
    (port,) = ports
    listed = await rabbitmqctl("list_connections", "name", "pid", "client_properties")
    rows = [
        line.split("\t")
        for line in listed.splitlines()
        if line.split("\t")[0].split(" -> ")[0].endswith(f":{port}")
    ]
    assert len(rows) == 1, listed
    name, erlang_pid, properties = rows[0]
    assert '{"connection_name","relaybus"}' in properties
    return name, erlang_pid


async def test_metrics_over_http_match_the_tasks_run_and_healthz_follows_the_connection(fleet: Fleet) -> None:
    port = free_port()
    async with FakeLLMServer() as llm:
        env = {
            "RELAYBUS_LLM_PROVIDER": "openai",
            "RELAYBUS_LLM_MODEL": "m1",
            "OPENAI_BASE_URL": llm.openai_base_url,
            "OPENAI_API_KEY": "",
        }
        worker = await fleet.start("Writer", "Failing", args=("--metrics-port", str(port)), env=env)
        base = f"http://127.0.0.1:{port}"
        assert await wait_for_health(base + "/healthz", 200) == "ok\n"
        starting = [json.loads(line) for line in worker.log().splitlines() if '"worker_starting"' in line]
        assert [(e["llm_provider"], e["llm_model"]) for e in starting] == [("openai", "m1")]
        async with ReplyRouter(fleet.bus) as router:
            writes = await asyncio.gather(
                *(
                    router.request(AgentTask(topic=fleet.topic("write.x"), prompt=f"essay {n}"), timeout=60)
                    for n in range(4)
                )
            )
            fails = await asyncio.gather(
                *(
                    router.request(AgentTask(topic=fleet.topic("fail"), prompt="x"), timeout=60)
                    for _ in range(2)
                )
            )
        assert all(r.ok for r in writes), writes
        assert all(r.status is ExecutionStatus.FAILURE for r in fails)
        assert llm.requests == 4

        status, text = await get(base + "/metrics")
        assert status == 200
        writer, failing = fleet.name("writer"), fleet.name("failing")
        assert sample(text, "relaybus_tasks_total", agent=writer, status="success") == 4
        assert sample(text, "relaybus_tasks_total", agent=failing, status="failure") == 2
        assert sample(text, "relaybus_task_duration_seconds_count") == 6
        assert sample(text, "relaybus_tasks_in_flight") == 0
        assert sample(text, "relaybus_llm_requests_total", provider="openai", outcome="ok") == llm.requests
        # FakeLLMServer counts words; the results carry what it reported, per task.
        for kind in ("prompt", "completion"):
            reported = sum(getattr(r.usage, f"{kind}_tokens") for r in writes if r.usage)
            assert reported > 0
            assert (
                sample(text, "relaybus_llm_tokens_total", provider="openai", model="m1", kind=kind)
                == reported
            )

        # The broker drops this worker's connection (only this one: the broker is shared). The worker is back
        # within a fraction of a second, so a prober watches /healthz all along; the connection is dropped
        # again (its new one) until the prober has seen the 503.
        name, _ = await broker_connection_of(worker.pid)
        seen: list[tuple[int, str]] = []
        async with aiohttp.ClientSession() as session:
            prober = asyncio.ensure_future(probe(session, base + "/healthz", seen))
            try:
                async with asyncio.timeout(30):
                    while not any(status == 503 for status, _ in seen):
                        with contextlib.suppress(AssertionError):  # between two connections
                            _, erlang_pid = await broker_connection_of(worker.pid)
                            await rabbitmqctl("close_connection", erlang_pid, "test: /healthz sees it drop")
                        await asyncio.sleep(0.5)
                drop = next(i for i, (status, _) in enumerate(seen) if status == 503)
                async with asyncio.timeout(60):
                    while not any(status == 200 for status, _ in seen[drop:]):
                        await asyncio.sleep(0.05)
            finally:
                prober.cancel()
        assert "broker connection" in seen[drop][1]
        assert (await broker_connection_of(worker.pid))[0] != name  # a new connection, not the old one

        async with ReplyRouter(fleet.bus) as router:  # and it takes tasks again
            again = await router.request(AgentTask(topic=fleet.topic("write.x"), prompt="after"), timeout=60)
        assert again.ok
        _, text = await get(base + "/metrics")
        assert sample(text, "relaybus_tasks_total", agent=writer, status="success") == 5
