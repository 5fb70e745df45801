"""The REST API on a real RabbitMQ: submit, wait, read, stream and cancel tasks; tokens; refused bodies."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import aiohttp
import pytest

from .conftest import TOKEN, Stack, serve

pytestmark = pytest.mark.integration


def _task(stack: Stack, prompt: str = "hello", **input: Any) -> dict[str, Any]:
    return {"topic": stack.topic, "prompt": prompt, "input": input}


async def test_post_with_wait_answers_200_with_the_workers_result(stack: Stack) -> None:
    async with stack.client() as http:
        response = await http.post("/tasks?wait=20", json=_task(stack, "hi", n=1))
    assert response.status_code == 200
    view = response.json()
    assert view["phase"] == "finished"
    assert view["result"]["status"] == "success"
    assert view["result"]["output"] == {"echo": "hi", "input": {"n": 1}}
    assert view["result"]["agent"] == stack.name
    assert response.headers["Location"] == f"/tasks/{view['id']}"


async def test_post_without_wait_answers_202_and_get_shows_the_result_later(stack: Stack) -> None:
    async with stack.client() as http:
        accepted = await http.post("/tasks", json=_task(stack, "later", sleep_s=0.3))
        assert accepted.status_code == 202
        assert accepted.json()["phase"] in {"submitted", "working"}
        assert accepted.json()["result"] is None
        location = accepted.headers["Location"]
        deadline = time.monotonic() + 20
        while (view := (await http.get(location)).json())["phase"] != "finished":
            assert time.monotonic() < deadline, view
            await asyncio.sleep(0.05)
        again = await http.get(location)
    assert view["result"]["output"]["echo"] == "later"
    assert again.status_code == 200
    assert again.json() == view  # kept for GET after completion


async def test_a_wait_shorter_than_the_task_answers_202_with_the_task_still_working(stack: Stack) -> None:
    async with stack.client() as http:
        response = await http.post("/tasks?wait=0.2", json=_task(stack, sleep_s=2))
    assert response.status_code == 202
    assert response.json()["phase"] == "working"


async def test_posting_the_same_task_id_twice_runs_it_once(stack: Stack) -> None:
    body = {**_task(stack, "once"), "id": str(uuid.uuid4())}
    async with stack.client() as http:
        first = await http.post("/tasks?wait=20", json=body)
        second = await http.post("/tasks?wait=20", json=body)
    assert first.json() == second.json()
    assert len(stack.agent.started) == 1


async def _read_events(http: Any, task_id: str) -> list[tuple[str, dict[str, Any]]]:
    """The ``(event, data)`` pairs of the task's SSE stream, read to its end."""
    events: list[tuple[str, dict[str, Any]]] = []
    async with http.stream("GET", f"/tasks/{task_id}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        kind = ""
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((kind, json.loads(line.removeprefix("data: "))))
    return events


async def test_the_event_stream_shows_each_phase_and_ends_with_the_result(stack: Stack) -> None:
    async with stack.client() as http:
        task_id = (await http.post("/tasks", json=_task(stack, "streamed", sleep_s=0.3))).json()["id"]
        events = await _read_events(http, task_id)
    assert [k for k, _ in events] == ["status", "status", "status", "result"]
    assert [e["phase"] for _, e in events[:3]] == ["submitted", "working", "finished"]
    assert events[-1][1]["status"] == "success"
    assert events[-1][1]["output"]["echo"] == "streamed"


async def test_the_event_stream_carries_the_tasks_events_between_working_and_finished(stack: Stack) -> None:
    async with stack.client() as http:
        body = _task(stack, "words", say=["Hel", "lo", " there"])
        task_id = (await http.post("/tasks", json=body)).json()["id"]
        events = await _read_events(http, task_id)
    kinds = [k for k, _ in events]
    assert kinds == ["status", "status", "progress", "delta", "delta", "delta", "status", "result"]
    assert events[2][1]["data"] == {"words": 3}
    assert [e["seq"] for _, e in events[2:6]] == [1, 2, 3, 4]
    assert "".join(e["text"] for k, e in events if k == "delta") == events[-1][1]["output"] == "Hello there"


async def test_an_event_stream_resumes_after_the_last_event_id_it_saw(stack: Stack) -> None:
    async with stack.client() as http:
        task_id = (await http.post("/tasks?wait=20", json=_task(stack))).json()["id"]
        response = await http.get(f"/tasks/{task_id}/events", headers={"Last-Event-ID": "1"})
    lines = [line for line in response.text.splitlines() if line.startswith(("id:", "event:"))]
    assert lines == ["id: 2", "event: status", "event: result"]


async def test_delete_cancels_a_running_task_and_the_worker_stops_it(stack: Stack) -> None:
    async with stack.client() as http:
        task_id = (await http.post("/tasks", json=_task(stack, "long", sleep_s=60))).json()["id"]
        await stack.agent.wait_started(task_id)
        cancelled = await http.delete(f"/tasks/{task_id}")
        # The CancelRequest reached the worker, which stopped the 60 s sleep (wait_cancelled gives it 10 s).
        await stack.agent.wait_cancelled(task_id)
        again = await http.delete(f"/tasks/{task_id}")
        view = (await http.get(f"/tasks/{task_id}")).json()
    assert cancelled.status_code == 200
    assert cancelled.json()["result"]["status"] == "cancelled"
    assert again.status_code == 409
    assert view["result"]["status"] == "cancelled"


async def test_unknown_and_malformed_task_ids_are_404_and_400(stack: Stack) -> None:
    async with stack.client() as http:
        unknown = await http.get(f"/tasks/{uuid.uuid4()}")
        malformed = await http.get("/tasks/not-a-uuid")
        cancel_unknown = await http.delete(f"/tasks/{uuid.uuid4()}")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("application/problem+json")
    assert malformed.status_code == 400
    assert cancel_unknown.status_code == 404


async def test_a_task_no_agent_subscribes_to_ends_rejected_at_once(stack: Stack) -> None:
    async with stack.client() as http:
        response = await http.post("/tasks?wait=20", json={"topic": f"nobody.{uuid.uuid4().hex}"})
    assert response.status_code == 200
    assert response.json()["result"]["status"] == "rejected"
    assert response.json()["result"]["error"]["type"] == "NoRouteError"


async def test_bodies_that_are_too_big_not_json_or_not_a_task_are_refused_with_the_reason(
    amqp_url: str,
) -> None:
    async with serve(amqp_url, max_body_bytes=2048) as stack, stack.client() as http:
        too_big = await http.post("/tasks", json=_task(stack, "x" * 4096))
        not_json = await http.post(
            "/tasks", content=b'{"topic": ', headers={"Content-Type": "application/json"}
        )
        not_a_task = await http.post("/tasks", json={"topic": "bad topic!", "priority": 12})
        wrong_type = await http.post("/tasks", content=b"topic=x", headers={"Content-Type": "text/plain"})
        bad_wait = await http.post("/tasks?wait=soon", json=_task(stack))
    assert too_big.status_code == 413
    assert "2048" in too_big.json()["detail"]
    assert not_json.status_code == 400
    assert "not JSON" in not_json.json()["detail"]
    assert not_a_task.status_code == 422
    assert {e["loc"] for e in not_a_task.json()["errors"]} == {"topic", "priority"}
    assert wrong_type.status_code == 415
    assert bad_wait.status_code == 400


async def test_with_tokens_configured_a_request_without_a_valid_one_is_401(secured: Stack) -> None:
    async with secured.client() as http:
        allowed = await http.post("/tasks?wait=20", json=_task(secured))
    async with secured.client(headers={}) as anonymous:
        missing = await anonymous.post("/tasks", json=_task(secured))
        wrong = await anonymous.get("/tasks/x", headers={"Authorization": "Bearer " + "x" * len(TOKEN)})
        basic = await anonymous.get("/tasks/x", headers={"Authorization": f"Basic {TOKEN}"})
        card = await anonymous.get("/.well-known/agent-card.json")
        health = await anonymous.get("/healthz")
    assert allowed.status_code == 200
    for refused in (missing, wrong, basic):
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        assert TOKEN not in refused.text
    assert card.status_code == 200  # discovery stays public; the card says a bearer token is needed
    assert "bearer" in card.json()["securitySchemes"]
    assert health.status_code == 200
    assert len(secured.agent.started) == 1  # the refused POST published nothing


async def test_500_concurrent_waiting_requests_are_served_on_one_event_loop(amqp_url: str) -> None:
    count, sleep_s = 500, 0.5
    async with serve(amqp_url, concurrency=count) as stack:
        connector = aiohttp.TCPConnector(limit=count)
        async with aiohttp.ClientSession(base_url=stack.url, connector=connector) as session:

            async def one(i: int) -> tuple[int, Any]:
                async with session.post("/tasks?wait=60", json=_task(stack, f"c{i}", sleep_s=sleep_s)) as r:
                    return r.status, await r.json()

            started = time.monotonic()
            answers = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(count))), 120)
            elapsed = time.monotonic() - started
    assert [status for status, _ in answers] == [200] * count
    assert sorted(view["result"]["output"]["echo"] for _, view in answers) == sorted(
        f"c{i}" for i in range(count)
    )
    # One after another they would take 250 s; waiting together they take a small part of that.
    assert elapsed < count * sleep_s / 10
