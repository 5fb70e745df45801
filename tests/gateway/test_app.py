"""The gateway's own routes and life cycle: agent cards, OpenAPI and its page, health, errors, and a graceful
stop that answers waiting requests. On the in-process MemoryBus (the REST and A2A files use RabbitMQ)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from relaybus.agents import AgentWorker
from relaybus.bus.connect import connect
from relaybus.gateway import Gateway, GatewayConfig
from relaybus.gateway.openapi import docs_page, openapi_document
from relaybus.secrets import Secret

from .conftest import TOKEN, EchoAgent


@pytest.fixture
async def memory_gateway() -> AsyncIterator[tuple[Gateway, EchoAgent]]:
    bus = await connect("memory://")
    agent = EchoAgent()
    worker = AgentWorker(bus, [agent], heartbeat_interval_s=1, grace_s=0)  # a test's long task goes back
    async with worker, Gateway(bus, GatewayConfig(port=0)) as gateway:
        assert await gateway.directory.wait_for_agent(agent.name, 5)
        yield gateway, agent
    await bus.close()


async def test_the_cards_list_the_live_agents_and_point_at_their_endpoints(
    memory_gateway: tuple[Gateway, EchoAgent],
) -> None:
    gateway, agent = memory_gateway
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        shared = await http.get("/.well-known/agent-card.json")
        own = await http.get(f"/agents/{agent.name}/.well-known/agent-card.json")
        unchanged = await http.get(
            "/.well-known/agent-card.json", headers={"If-None-Match": shared.headers["ETag"]}
        )
        missing = await http.get("/agents/nobody/.well-known/agent-card.json")
    card = shared.json()
    assert [s["id"] for s in card["skills"]] == [agent.name]
    assert card["supportedInterfaces"][0] == {
        "url": f"{gateway.url}/a2a",
        "protocolBinding": "JSONRPC",
        "protocolVersion": "1.0",
    }
    assert card["url"] == f"{gateway.url}/a2a"  # what a 0.3 client reads
    assert "securitySchemes" not in card  # an open gateway asks for nothing
    assert own.json()["url"] == f"{gateway.url}/agents/{agent.name}/a2a"
    assert unchanged.status_code == 304
    assert missing.status_code == 404


async def test_openapi_describes_the_rest_api_and_docs_shows_it_escaped(
    memory_gateway: tuple[Gateway, EchoAgent],
) -> None:
    gateway, _ = memory_gateway
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        document = (await http.get("/openapi.json")).json()
        page = await http.get("/docs")
    assert document["openapi"].startswith("3.1")
    assert {"/tasks", "/tasks/{task_id}", "/tasks/{task_id}/events"} <= set(document["paths"])
    assert document["paths"]["/tasks"]["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/AgentTask"
    }
    assert document["components"]["schemas"]["AgentTask"]["required"] == ["topic"]  # the gateway makes an id
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src" not in page.headers["Content-Security-Policy"]
    assert "<script" not in page.text
    assert "/tasks/{task_id}/events" in page.text


def test_the_docs_page_escapes_what_it_shows() -> None:
    document = openapi_document("http://h", secured=True)
    document["paths"]["/x"] = {"get": {"summary": "<script>alert(1)</script>"}}
    page = docs_page(document)
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert document["security"] == [{"bearer": []}]


async def test_health_and_unknown_routes(memory_gateway: tuple[Gateway, EchoAgent]) -> None:
    gateway, _ = memory_gateway
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        health = await http.get("/healthz")
        unknown = await http.get("/nothing/here")
        wrong_method = await http.put("/tasks")
    assert health.json() == {"broker": "connected", "agents": 1, "in_flight": 0, "results_kept": 0}
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("application/problem+json")
    assert wrong_method.status_code == 405
    assert "POST" in wrong_method.headers["Allow"]


async def test_closing_answers_waiting_requests_and_ends_streams_while_the_task_goes_on(
    memory_gateway: tuple[Gateway, EchoAgent],
) -> None:
    gateway, agent = memory_gateway
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        body = {"topic": agent.topics[0], "input": {"sleep_s": 30}}
        waiting = asyncio.create_task(http.post("/tasks?wait=60", json=body))
        async with asyncio.timeout(10):  # the task started: its POST is waiting in the gateway
            while not agent.started:
                await asyncio.sleep(0.01)
        [task_id] = agent.started
        lines = []
        async with http.stream("GET", f"/tasks/{task_id}/events") as stream:
            async for line in stream.aiter_lines():
                lines.append(line)
                if line == "id: 1":  # submitted and working seen: now stop the gateway
                    await gateway.close()
        response = await waiting
    # Neither waited for the 30 s task nor the 60 s wait: the caller may ask another gateway later.
    assert response.status_code == 202
    assert response.json()["phase"] == "working"
    assert [line for line in lines if line.startswith("event:")] == ["event: status", "event: status"]
    assert task_id not in agent.cancelled  # stopping the gateway did not cancel the task


async def test_a_port_in_use_is_a_clear_error() -> None:
    bus = await connect("memory://")
    async with Gateway(bus, GatewayConfig(port=0)) as first:
        port = int(first.url.rsplit(":", 1)[1])
        with pytest.raises(Exception, match=f"cannot listen on 127.0.0.1:{port}"):
            await Gateway(bus, GatewayConfig(port=port)).start()
    await bus.close()


async def test_a_secured_gateway_card_asks_for_a_bearer_token() -> None:
    bus = await connect("memory://")
    config = GatewayConfig(port=0, tokens=(Secret(TOKEN),))
    async with Gateway(bus, config) as gateway, httpx.AsyncClient(base_url=gateway.url) as http:
        card = (await http.get("/.well-known/agent-card.json")).json()
        document = (await http.get("/openapi.json")).json()
    assert card["securitySchemes"]["bearer"]["httpAuthSecurityScheme"]["scheme"] == "Bearer"
    assert card["securityRequirements"] == [{"schemes": {"bearer": {"list": []}}}]
    assert document["security"] == [{"bearer": []}]
    await bus.close()
