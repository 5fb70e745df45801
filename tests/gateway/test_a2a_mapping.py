"""A2A messages to relaybus tasks and task records to A2A Tasks, in the 1.0 and the 0.3 forms."""

from __future__ import annotations

from typing import Any

import pytest

from relaybus import ExecutionResult, ExecutionStatus
from relaybus.gateway.a2a_mapping import (
    a2a_task,
    stream_events,
    task_from_message,
    task_page,
    task_state,
    to_v03,
)
from relaybus.gateway.a2a_types import (
    A2AError,
    ErrorCode,
    ListTasksParams,
    SendMessageParams,
    send_params_from_v03,
)
from relaybus.gateway.tasks import TaskPhase, TaskRecord, Transition


def _params(*parts: dict[str, Any], **configuration: Any) -> SendMessageParams:
    message = {"messageId": "m1", "role": "ROLE_USER", "parts": list(parts), "contextId": "ctx"}
    return SendMessageParams.model_validate({"message": message, "configuration": configuration})


def _finished(record: TaskRecord, result: ExecutionResult) -> TaskRecord:
    record.result = result
    record.transitions.append(Transition(TaskPhase.FINISHED, record.transitions[-1].at))
    return record


def test_text_parts_become_the_prompt_and_data_parts_the_input() -> None:
    params = _params(
        {"text": "line one"}, {"data": {"a": 1, "b": 1}}, {"text": "line two"}, {"data": {"b": 2}}
    )
    task, context = task_from_message(params, "reviewer")
    assert task.prompt == "line one\nline two"
    assert task.input == {"a": 1, "b": 2}
    assert task.agent == "reviewer"
    assert task.routing_key == "agent.reviewer"
    assert task.metadata == {"a2a-context-id": "ctx", "a2a-message-id": "m1"}
    assert context["a2a_message"]["taskId"] == str(task.id)


@pytest.mark.parametrize(
    ("part", "code"),
    [
        ({"url": "https://example.invalid/f.pdf"}, ErrorCode.CONTENT_TYPE_NOT_SUPPORTED),
        ({"raw": "aGk="}, ErrorCode.CONTENT_TYPE_NOT_SUPPORTED),
        ({"data": [1, 2]}, ErrorCode.INVALID_PARAMS),
        ({"data": None}, ErrorCode.INVALID_PARAMS),
    ],
)
def test_files_and_data_that_is_no_object_are_refused(part: dict[str, Any], code: ErrorCode) -> None:
    with pytest.raises(A2AError) as raised:
        task_from_message(_params(part), "a")
    assert raised.value.code is code


def test_a_part_must_hold_exactly_one_kind_of_content() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        _params({"text": "a", "data": {}})
    with pytest.raises(ValueError, match="exactly one"):
        _params({"metadata": {}})


def test_output_modes_the_agents_cannot_give_are_refused() -> None:
    with pytest.raises(A2AError) as raised:
        task_from_message(_params({"text": "a"}, acceptedOutputModes=["image/png"]), "a")
    assert raised.value.code is ErrorCode.CONTENT_TYPE_NOT_SUPPORTED
    task_from_message(_params({"text": "a"}, acceptedOutputModes=["image/png", "text/plain"]), "a")


@pytest.mark.parametrize(
    ("status", "state"),
    [
        (ExecutionStatus.SUCCESS, "TASK_STATE_COMPLETED"),
        (ExecutionStatus.FAILURE, "TASK_STATE_FAILED"),
        (ExecutionStatus.TIMEOUT, "TASK_STATE_FAILED"),
        (ExecutionStatus.CANCELLED, "TASK_STATE_CANCELED"),
        (ExecutionStatus.REJECTED, "TASK_STATE_REJECTED"),
    ],
)
def test_each_execution_status_maps_to_an_a2a_state(status: ExecutionStatus, state: str) -> None:
    task, context = task_from_message(_params({"text": "a"}), "a")
    record = TaskRecord(task, context=context)
    assert task_state(record) == "TASK_STATE_SUBMITTED"
    record.transitions.append(Transition(TaskPhase.WORKING, record.updated_at))
    assert task_state(record) == "TASK_STATE_WORKING"
    result = (
        ExecutionResult.success(task.id, "ok")
        if status is ExecutionStatus.SUCCESS
        else ExecutionResult.failed(task.id, status, "Why", "because")
    )
    shown = a2a_task(_finished(record, result))
    assert shown["status"]["state"] == state
    assert shown["metadata"]["relaybus"]["status"] == status.value  # a TIMEOUT says so here
    if status is not ExecutionStatus.SUCCESS:
        assert shown["status"]["message"]["parts"] == [{"text": "Why: because"}]


def test_a_string_output_is_a_text_artifact_and_anything_else_a_data_artifact() -> None:
    task, _ = task_from_message(_params({"text": "a"}), "a")
    text = a2a_task(_finished(TaskRecord(task), ExecutionResult.success(task.id, "words")))
    data = a2a_task(_finished(TaskRecord(task), ExecutionResult.success(task.id, [1, 2])))
    none = a2a_task(_finished(TaskRecord(task), ExecutionResult.success(task.id, None)))
    assert text["artifacts"][0]["parts"] == [{"text": "words", "mediaType": "text/plain"}]
    assert data["artifacts"][0]["parts"] == [{"data": [1, 2], "mediaType": "application/json"}]
    assert "artifacts" not in none
    assert to_v03({"task": data})["artifacts"][0]["parts"] == [{"kind": "data", "data": {"value": [1, 2]}}]


def test_history_holds_the_users_message_and_history_length_limits_it() -> None:
    task, context = task_from_message(_params({"text": "hello"}), "a")
    record = TaskRecord(task, context=context)
    assert a2a_task(record)["history"][0]["parts"] == [{"text": "hello"}]
    assert "history" not in a2a_task(record, history_length=0)


def test_stream_events_send_the_artifact_before_the_final_status() -> None:
    task, context = task_from_message(_params({"text": "a"}), "a")
    record = _finished(TaskRecord(task, context=context), ExecutionResult.success(task.id, {"x": 1}))
    events = stream_events(record, record.transitions[-1])
    assert [next(iter(e)) for e in events] == ["artifactUpdate", "statusUpdate"]
    assert events[1]["statusUpdate"]["contextId"] == "ctx"
    converted = [to_v03(e) for e in events]
    assert [e["kind"] for e in converted] == ["artifact-update", "status-update"]
    assert converted[1]["final"] is True
    assert converted[1]["status"]["state"] == "completed"


def test_a_0_3_send_is_read_as_its_1_0_equivalent() -> None:
    v03 = {
        "message": {
            "kind": "message",
            "messageId": "m",
            "role": "user",
            "parts": [{"kind": "text", "text": "t"}, {"kind": "data", "data": {"k": 1}}],
        },
        "configuration": {"blocking": False, "historyLength": 0},
    }
    params = SendMessageParams.model_validate(send_params_from_v03(v03))
    assert params.message.role == "ROLE_USER"
    assert params.configuration.return_immediately is True
    assert params.configuration.history_length == 0
    task, _ = task_from_message(params, "a")
    assert (task.prompt, task.input) == ("t", {"k": 1})
    blocking = SendMessageParams.model_validate(send_params_from_v03({"message": v03["message"]}))
    assert blocking.configuration.return_immediately is False  # 0.3 waits unless blocking is false


def test_a_task_page_filters_by_context_and_refuses_a_token_it_did_not_give() -> None:
    records = []
    for context in ("a", "b", "a"):
        params = SendMessageParams.model_validate(
            {"message": {"messageId": "m", "contextId": context, "parts": [{"text": "x"}]}}
        )
        task, kept = task_from_message(params, "agent")
        records.append(TaskRecord(task, context=kept))
    page = task_page(records, ListTasksParams.model_validate({"contextId": "a", "pageSize": 1}))
    assert page["totalSize"] == 2
    assert len(page["tasks"]) == 1
    rest = task_page(records, ListTasksParams(context_id="a", page_size=1, page_token=page["nextPageToken"]))
    assert {page["tasks"][0]["id"], rest["tasks"][0]["id"]} == {str(records[0].id), str(records[2].id)}
    assert rest["nextPageToken"] == ""
    with pytest.raises(A2AError) as raised:
        task_page(records, ListTasksParams(page_token="bm90IG1pbmU="))
    assert raised.value.code is ErrorCode.INVALID_PARAMS
    with pytest.raises(ValueError, match="timezone"):
        ListTasksParams.model_validate({"statusTimestampAfter": "2025-01-01T00:00:00"})
