"""The A2A JSON-RPC endpoint by raw requests: the 0.3 method names for clients that send no version, version
negotiation, and the JSON-RPC error codes of malformed or unsupported requests."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from .conftest import TOKEN, Stack, serve

pytestmark = pytest.mark.integration


def _rpc(method: str, params: Any, request_id: Any = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


def _send_v03(prompt: str, *, blocking: bool | None = None, **data: Any) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"kind": "text", "text": prompt}]
    if data:
        parts.append({"kind": "data", "data": data})
    params: dict[str, Any] = {
        "message": {"kind": "message", "messageId": uuid.uuid4().hex, "role": "user", "parts": parts}
    }
    if blocking is not None:
        params["configuration"] = {"blocking": blocking}
    return params


async def _call(http: httpx.AsyncClient, path: str, body: Any, **headers: str) -> dict[str, Any]:
    response = await http.post(path, json=body, headers=headers)
    assert response.status_code == 200, response.text
    payload: dict[str, Any] = response.json()
    return payload


def _sse_results(text: str) -> list[dict[str, Any]]:
    return [
        json.loads(line.removeprefix("data: ")) for line in text.splitlines() if line.startswith("data: ")
    ]


async def test_message_send_without_a_version_is_answered_in_a2a_0_3_form(stack: Stack) -> None:
    async with stack.client() as http:
        reply = await _call(
            http, f"/agents/{stack.name}/a2a", _rpc("message/send", _send_v03("hi", k=1), "r1")
        )
    assert reply["id"] == "r1"
    task = reply["result"]
    assert task["kind"] == "task"
    assert task["status"]["state"] == "completed"
    [part] = task["artifacts"][0]["parts"]
    assert part == {"kind": "data", "data": {"echo": "hi", "input": {"k": 1}}}
    assert task["history"][0]["role"] == "user"
    assert task["history"][0]["parts"][0] == {"kind": "text", "text": "hi"}


async def test_the_0_3_stream_get_and_cancel_methods(stack: Stack) -> None:
    path = f"/agents/{stack.name}/a2a"
    async with stack.client() as http:
        streamed = await http.post(path, json=_rpc("message/stream", _send_v03("s", sleep_s=0.2, text=True)))
        events = [e["result"] for e in _sse_results(streamed.text)]
        got = await _call(http, path, _rpc("tasks/get", {"id": events[0]["id"]}))
        long = await _call(http, path, _rpc("message/send", _send_v03("long", blocking=False, sleep_s=60)))
        task_id = long["result"]["id"]
        await stack.agent.wait_started(task_id)
        cancelled = await _call(http, path, _rpc("tasks/cancel", {"id": task_id}))
        await stack.agent.wait_cancelled(task_id)
    assert streamed.headers["content-type"].startswith("text/event-stream")
    assert [e["kind"] for e in events] == ["task", "status-update", "artifact-update", "status-update"]
    assert [e["final"] for e in events if e["kind"] == "status-update"] == [False, True]
    assert events[2]["artifact"]["parts"] == [{"kind": "text", "text": "s"}]
    assert events[3]["status"]["state"] == "completed"
    assert got["result"]["status"]["state"] == "completed"
    assert long["result"]["status"]["state"] in {"submitted", "working"}  # blocking: false returned at once
    assert cancelled["result"]["status"]["state"] == "canceled"


async def test_the_version_comes_from_the_header_or_the_query_and_must_fit_the_method(stack: Stack) -> None:
    path = f"/agents/{stack.name}/a2a"
    v10 = {"message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "v"}]}}
    async with stack.client() as http:
        by_header = await _call(http, path, _rpc("SendMessage", v10), **{"A2A-Version": "1.0"})
        by_query = await _call(http, path + "?A2A-Version=1.0", _rpc("SendMessage", v10))
        patch_ignored = await _call(http, path, _rpc("SendMessage", v10), **{"A2A-Version": "1.0.3"})
        new_name_no_version = await _call(http, path, _rpc("SendMessage", v10))
        old_name_new_version = await _call(
            http, path, _rpc("message/send", _send_v03("x")), **{"A2A-Version": "1.0"}
        )
        unknown_version = await _call(http, path, _rpc("SendMessage", v10), **{"A2A-Version": "2.0"})
    for ok in (by_header, by_query, patch_ignored):
        assert ok["result"]["task"]["status"]["state"] == "TASK_STATE_COMPLETED"
    for refused in (new_name_no_version, old_name_new_version, unknown_version):
        assert refused["error"]["code"] == -32009
    assert unknown_version["error"]["data"][0]["reason"] == "VERSION_NOT_SUPPORTED"


@pytest.mark.parametrize(
    ("body", "code", "says"),
    [
        (b"{not json", -32700, "not JSON"),
        (b"[]", -32600, "batches"),
        (b'{"jsonrpc": "2.0", "id": 1}', -32600, "method"),
        (b'{"jsonrpc": "1.0", "id": 1, "method": "message/send"}', -32600, "2.0"),
        (b'{"jsonrpc": "2.0", "id": true, "method": "message/send"}', -32600, "id must be"),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "tasks/explode"}', -32601, "tasks/explode"),
        (
            b'{"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {"message": {}}}',
            -32602,
            "messageId",
        ),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "tasks/get", "params": {"id": "nope"}}', -32001, "nope"),
        (
            b'{"jsonrpc": "2.0", "id": 1, "method": "tasks/pushNotificationConfig/set", "params": {}}',
            -32003,
            "push",
        ),
    ],
)
async def test_malformed_and_unsupported_requests_get_the_json_rpc_error_code(
    stack: Stack, body: bytes, code: int, says: str
) -> None:
    async with stack.client() as http:
        response = await http.post("/a2a", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 200
    error = response.json()["error"]
    assert error["code"] == code
    assert says in error["message"]


async def test_file_parts_data_that_is_no_object_and_follow_up_messages_are_refused(stack: Stack) -> None:
    path = f"/agents/{stack.name}/a2a"
    file_part = {"kind": "file", "file": {"uri": "https://example.invalid/x.pdf"}}
    file_message = {"message": {"kind": "message", "messageId": "f", "role": "user", "parts": [file_part]}}
    list_message = {
        "message": {
            "kind": "message",
            "messageId": "l",
            "role": "user",
            "parts": [{"kind": "text", "text": "a"}],
        }
    }
    async with stack.client() as http:
        file_reply = await _call(http, path, _rpc("message/send", file_message))
        done = await _call(http, path, _rpc("message/send", list_message))
        follow_up = {**list_message["message"], "taskId": done["result"]["id"], "messageId": "l2"}
        follow_reply = await _call(http, path, _rpc("message/send", {"message": follow_up}))
        ghost = {**follow_up, "taskId": str(uuid.uuid4())}
        ghost_reply = await _call(http, path, _rpc("message/send", {"message": ghost}))
        resubscribe = await _call(http, path, _rpc("tasks/resubscribe", {"id": done["result"]["id"]}))
        v10_list = {"message": {"messageId": "d", "role": "ROLE_USER", "parts": [{"data": [1, 2]}]}}
        list_reply = await _call(http, path, _rpc("SendMessage", v10_list), **{"A2A-Version": "1.0"})
    assert file_reply["error"]["code"] == -32005
    assert follow_reply["error"]["code"] == -32004  # a relaybus task takes one message
    assert ghost_reply["error"]["code"] == -32001
    assert resubscribe["error"]["code"] == -32004  # it has ended
    assert list_reply["error"]["code"] == -32602
    assert "JSON object" in list_reply["error"]["message"]


async def test_a_task_of_another_agent_is_not_found_on_this_agents_endpoint(stack: Stack) -> None:
    async with stack.client() as http:
        view = (await http.post("/tasks?wait=20", json={"topic": stack.topic, "agent": stack.name})).json()
        mine = await _call(http, f"/agents/{stack.name}/a2a", _rpc("tasks/get", {"id": view["id"]}))
        other = await _call(http, "/agents/someone-else/a2a", _rpc("tasks/get", {"id": view["id"]}))
    assert mine["result"]["status"]["state"] == "completed"
    assert other["error"]["code"] == -32001


async def test_an_oversized_request_is_refused_with_the_limit(amqp_url: str) -> None:
    async with serve(amqp_url, max_body_bytes=1024) as stack, stack.client() as http:
        reply = await _call(http, "/a2a", _rpc("message/send", _send_v03("x" * 2000)))
    assert reply["error"]["code"] == -32600
    assert "1024" in reply["error"]["message"]


async def test_the_endpoint_wants_the_token_when_tokens_are_configured(secured: Stack) -> None:
    body = _rpc("message/send", _send_v03("t"))
    async with secured.client(headers={}) as anonymous:
        refused = await anonymous.post(f"/agents/{secured.name}/a2a", json=body)
    async with secured.client() as http:
        allowed = await http.post(f"/agents/{secured.name}/a2a", json=body)
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == 'Bearer realm="relaybus"'
    assert TOKEN not in refused.text
    assert allowed.json()["result"]["status"]["state"] == "completed"
