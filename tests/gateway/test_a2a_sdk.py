"""The official A2A client (a2a-sdk 1.x) against the gateway on a real RabbitMQ: card, send, stream, get,
subscribe and cancel, as any A2A client vendor's agent would use it."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from a2a.client import ClientConfig, create_client
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    StreamResponse,
    SubscribeToTaskRequest,
    TaskState,
)
from a2a.utils.errors import InvalidParamsError, TaskNotCancelableError, TaskNotFoundError
from google.protobuf import struct_pb2

from .conftest import Stack

pytestmark = pytest.mark.integration


def _message(text: str, data: dict[str, Any] | None = None) -> Message:
    parts = [Part(text=text)]
    if data is not None:
        value = struct_pb2.Value()
        value.struct_value.update(data)
        parts.append(Part(data=value))
    return Message(message_id=uuid.uuid4().hex, role=Role.ROLE_USER, parts=parts)


@contextlib.asynccontextmanager
async def _client(stack: Stack, *, streaming: bool, agent_card: bool = True) -> AsyncIterator[Any]:
    http = httpx.AsyncClient(headers=stack.headers, timeout=30)
    base = f"{stack.url}/agents/{stack.name}" if agent_card else stack.url
    client = await create_client(base, client_config=ClientConfig(streaming=streaming, httpx_client=http))
    try:
        yield client
    finally:
        await client.close()
        await http.aclose()


async def _collect(stream: AsyncIterator[StreamResponse]) -> list[StreamResponse]:
    return [event async for event in stream]


async def _send_without_waiting(client: Any, stack: Stack, prompt: str, data: dict[str, Any]) -> Any:
    """A non-blocking SendMessage; returns the task it answered with once the agent started it."""
    request = SendMessageRequest(
        message=_message(prompt, data), configuration=SendMessageConfiguration(return_immediately=True)
    )
    [response] = await _collect(client.send_message(request))
    await stack.agent.wait_started(response.task.id)
    return response.task


async def test_the_gateway_card_lists_the_agents_as_skills_and_each_agent_has_its_own(stack: Stack) -> None:
    async with _client(stack, streaming=False, agent_card=False) as client:
        card = client._card  # what create_client resolved from /.well-known/agent-card.json
    assert stack.name in [skill.id for skill in card.skills]
    assert card.capabilities.streaming
    assert [(i.protocol_binding, i.protocol_version) for i in card.supported_interfaces] == [
        ("JSONRPC", "1.0"),
        ("JSONRPC", "0.3"),
    ]
    async with _client(stack, streaming=False) as client:
        own = client._card
    assert own.name == stack.name
    assert [skill.id for skill in own.skills] == [stack.name]
    assert own.supported_interfaces[0].url == f"{stack.url}/agents/{stack.name}/a2a"


async def test_send_message_waits_and_returns_the_completed_task_with_its_artifact(stack: Stack) -> None:
    async with _client(stack, streaming=False) as client:
        [response] = await _collect(client.send_message(SendMessageRequest(message=_message("hi", {"n": 2}))))
    task = response.task
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    [artifact] = task.artifacts
    output = artifact.parts[0].data.struct_value
    assert output["echo"] == "hi"
    assert output["input"]["n"] == 2  # the data part became the task's input
    assert task.history[0].parts[0].text == "hi"
    assert task.metadata["relaybus"]["agent"] == stack.name


async def test_a_failing_agent_gives_a_failed_task_with_the_error_in_the_status_message(stack: Stack) -> None:
    async with _client(stack, streaming=False) as client:
        [response] = await _collect(
            client.send_message(SendMessageRequest(message=_message("boom", {"fail": True})))
        )
    assert response.task.status.state == TaskState.TASK_STATE_FAILED
    assert "ValueError: told to fail on 'boom'" in response.task.status.message.parts[0].text
    assert response.task.metadata["relaybus"]["status"] == "failure"


async def test_streaming_sends_the_task_then_working_then_the_artifact_and_completed(stack: Stack) -> None:
    async with _client(stack, streaming=True) as client:
        events = await _collect(
            client.send_message(
                SendMessageRequest(message=_message("streamed", {"sleep_s": 0.3, "text": True}))
            )
        )
    kinds = [event.WhichOneof("payload") for event in events]
    assert kinds == ["task", "status_update", "artifact_update", "status_update"]
    assert events[0].task.status.state == TaskState.TASK_STATE_SUBMITTED
    assert events[1].status_update.status.state == TaskState.TASK_STATE_WORKING
    assert events[2].artifact_update.artifact.parts[0].text == "streamed"
    assert events[3].status_update.status.state == TaskState.TASK_STATE_COMPLETED
    assert {e.status_update.task_id for e in events[1::2]} == {events[0].task.id}


async def test_streaming_carries_the_agents_text_as_artifact_chunks_and_its_steps(stack: Stack) -> None:
    async with _client(stack, streaming=True) as client:
        events = await _collect(
            client.send_message(SendMessageRequest(message=_message("words", {"say": ["Hel", "lo", "!"]})))
        )
    kinds = [event.WhichOneof("payload") for event in events]
    assert kinds == [
        "task",
        "status_update",  # working
        "status_update",  # the agent's progress line
        "artifact_update",
        "artifact_update",
        "artifact_update",
        "artifact_update",  # the whole output
        "status_update",  # completed
    ]
    step = events[2].status_update
    assert step.status.state == TaskState.TASK_STATE_WORKING
    assert step.status.message.parts[0].text == "saying"
    assert step.metadata["relaybus"]["kind"] == "progress"
    chunks = [e.artifact_update for e in events[3:6]]
    assert [c.artifact.artifact_id for c in chunks] == ["stream"] * 3
    assert [c.append for c in chunks] == [False, True, True]
    assert "".join(c.artifact.parts[0].text for c in chunks) == "Hello!"
    assert [c.metadata["relaybus"]["seq"] for c in chunks] == [2, 3, 4]
    assert events[6].artifact_update.artifact.parts[0].text == "Hello!"
    assert events[7].status_update.status.state == TaskState.TASK_STATE_COMPLETED


async def test_a_non_blocking_send_returns_at_once_and_get_task_shows_the_result(stack: Stack) -> None:
    async with _client(stack, streaming=False) as client:
        answered = await _send_without_waiting(client, stack, "later", {"sleep_s": 2.0})
        assert answered.status.state in {TaskState.TASK_STATE_SUBMITTED, TaskState.TASK_STATE_WORKING}
        task_id = answered.id
        async with _client(stack, streaming=True) as streaming:
            subscribed = await _collect(streaming.subscribe(SubscribeToTaskRequest(id=task_id)))
        task = await client.get_task(GetTaskRequest(id=task_id))
        with pytest.raises(TaskNotFoundError):
            await client.get_task(GetTaskRequest(id=str(uuid.uuid4())))
    assert subscribed[0].WhichOneof("payload") == "task"
    assert subscribed[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert task.artifacts[0].parts[0].data.struct_value["echo"] == "later"


async def test_cancel_task_reaches_the_worker_which_stops_the_running_task(stack: Stack) -> None:
    async with _client(stack, streaming=False) as client:
        task_id = (await _send_without_waiting(client, stack, "long", {"sleep_s": 60})).id
        cancelled = await client.cancel_task(CancelTaskRequest(id=task_id))
        await stack.agent.wait_cancelled(task_id)  # the agent's handle saw the cancellation
        with pytest.raises(TaskNotCancelableError):
            await client.cancel_task(CancelTaskRequest(id=task_id))
    assert cancelled.status.state == TaskState.TASK_STATE_CANCELED


async def test_the_shared_endpoint_takes_the_agent_from_tenant(stack: Stack) -> None:
    async with _client(stack, streaming=False, agent_card=False) as client:
        named = await _collect(
            client.send_message(SendMessageRequest(tenant=stack.name, message=_message("t")))
        )
        nobody = await _collect(
            client.send_message(
                SendMessageRequest(tenant=f"nobody-{uuid.uuid4().hex}", message=_message("n"))
            )
        )
        with pytest.raises(InvalidParamsError, match="not an agent name"):
            await _collect(
                client.send_message(SendMessageRequest(tenant="no such agent!", message=_message("x")))
            )
    assert named[0].task.status.state == TaskState.TASK_STATE_COMPLETED
    assert named[0].task.metadata["relaybus"]["agent"] == stack.name
    assert nobody[0].task.status.state == TaskState.TASK_STATE_REJECTED  # no worker hosts it: at once
    assert "NoRouteError" in nobody[0].task.status.message.parts[0].text


async def test_list_tasks_pages_through_this_agents_tasks_newest_first(stack: Stack) -> None:
    async with _client(stack, streaming=False) as client:
        sent = []
        for prompt in ("one", "two", "three"):
            [response] = await _collect(client.send_message(SendMessageRequest(message=_message(prompt))))
            sent.append(response.task.id)
        first = await client.list_tasks(ListTasksRequest(page_size=2))
        second = await client.list_tasks(ListTasksRequest(page_size=2, page_token=first.next_page_token))
        completed = await client.list_tasks(
            ListTasksRequest(status=TaskState.TASK_STATE_COMPLETED, include_artifacts=True)
        )
        failed = await client.list_tasks(ListTasksRequest(status=TaskState.TASK_STATE_FAILED))
    assert [t.id for t in first.tasks] + [t.id for t in second.tasks] == sent[::-1]
    assert first.total_size == 3
    assert second.next_page_token == ""
    assert not first.tasks[0].artifacts  # artifacts only when asked for
    assert len(completed.tasks) == 3
    assert completed.tasks[0].artifacts[0].parts[0].data.struct_value["echo"] == "three"
    assert failed.tasks == []
