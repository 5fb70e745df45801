"""A2A <-> relaybus: an A2A message becomes an ``AgentTask``; a task's record becomes an A2A ``Task`` and
its stream events, in A2A 1.0 form or (:func:`to_v03`) in A2A 0.3 form.

The rules a client may rely on:

- The prompt is the message's text parts joined by newlines; its data parts (JSON objects) are merged, in
  order, into ``input``. File parts (``raw``, ``url``) are refused with ``ContentTypeNotSupportedError``.
- States: submitted and working as the gateway sees them (see :mod:`relaybus.gateway.tasks`); then SUCCESS
  -> ``completed``, FAILURE -> ``failed``, TIMEOUT -> ``failed`` (A2A has no timeout state; the task's
  ``metadata.relaybus.status`` says ``timeout``), CANCELLED -> ``canceled``, REJECTED -> ``rejected``.
- A finished task with an output has one artifact ``output``: a text part for a string, else a data part
  (in 0.3, whose data parts hold objects only, a value that is not an object comes as ``{"value": ...}``).
  A task that did not succeed has a status message giving the error's type and message.
- ``metadata.relaybus`` carries the relaybus result (status, error, agent, worker, timings, usage).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import uuid4

from pydantic import JsonValue

from relaybus.messages import AgentTask, ExecutionResult, ExecutionStatus

from .a2a_types import A2AError, ErrorCode, ListTasksParams, SendMessageParams
from .tasks import TaskPhase, TaskRecord, Transition

__all__ = [
    "A2A_TOPIC",
    "ACCEPTED_OUTPUT_MODES",
    "CONTEXT_KEY",
    "MESSAGE_KEY",
    "TERMINAL_STATES",
    "a2a_task",
    "context_id",
    "stream_events",
    "task_from_message",
    "task_page",
    "task_state",
    "to_v03",
]

A2A_TOPIC = "a2a.message"
"""The topic of tasks made from A2A messages (addressed to one agent by name: the topic routes nothing)."""
CONTEXT_KEY = "a2a_context_id"
MESSAGE_KEY = "a2a_message"
ACCEPTED_OUTPUT_MODES = frozenset({"text/plain", "application/json", "text/*", "application/*", "*/*"})
TERMINAL_STATES = frozenset(
    {"TASK_STATE_COMPLETED", "TASK_STATE_FAILED", "TASK_STATE_CANCELED", "TASK_STATE_REJECTED"}
)
_FINAL_STATE = {
    ExecutionStatus.SUCCESS: "TASK_STATE_COMPLETED",
    ExecutionStatus.FAILURE: "TASK_STATE_FAILED",
    ExecutionStatus.TIMEOUT: "TASK_STATE_FAILED",
    ExecutionStatus.CANCELLED: "TASK_STATE_CANCELED",
    ExecutionStatus.REJECTED: "TASK_STATE_REJECTED",
}
_PHASE_STATE = {TaskPhase.SUBMITTED: "TASK_STATE_SUBMITTED", TaskPhase.WORKING: "TASK_STATE_WORKING"}


def task_from_message(params: SendMessageParams, agent: str) -> tuple[AgentTask, dict[str, Any]]:
    """The task for ``agent`` that ``params``' message asks for, and the A2A context to keep beside it."""
    message = params.message
    accepted = params.configuration.accepted_output_modes
    if accepted and not ACCEPTED_OUTPUT_MODES.intersection(accepted):
        raise A2AError(
            ErrorCode.CONTENT_TYPE_NOT_SUPPORTED,
            f"relaybus agents answer text/plain or application/json, not only {', '.join(accepted)}",
        )
    texts: list[str] = []
    payload: dict[str, JsonValue] = {}
    for index, part in enumerate(message.parts):
        if part.text is not None:
            texts.append(part.text)
        elif part.is_data:
            if not isinstance(part.data, dict):
                raise A2AError(
                    ErrorCode.INVALID_PARAMS,
                    f"message.parts[{index}]: a data part must hold a JSON object (it becomes the input)",
                )
            payload.update(part.data)
        else:
            raise A2AError(
                ErrorCode.CONTENT_TYPE_NOT_SUPPORTED,
                f"message.parts[{index}]: relaybus agents take text and data parts, not files",
            )
    context_id = message.context_id or uuid4().hex
    task = AgentTask(
        topic=A2A_TOPIC,
        agent=agent,
        prompt="\n".join(texts),
        input=payload,
        metadata={"a2a-context-id": context_id, "a2a-message-id": message.message_id},
    )
    kept = message.model_dump(mode="json", by_alias=True, exclude_unset=True)
    kept.update(taskId=str(task.id), contextId=context_id)
    return task, {CONTEXT_KEY: context_id, MESSAGE_KEY: kept}


def _timestamp(at: datetime | None) -> str | None:
    # ProtoJSON timestamps: UTC with a Z and millisecond precision.
    return None if at is None else at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def context_id(record: TaskRecord) -> str:
    return str(record.context.get(CONTEXT_KEY) or record.id)


def task_state(record: TaskRecord) -> str:
    """The A2A 1.0 state of ``record`` now (``TASK_STATE_...``)."""
    if record.result is not None:
        return _FINAL_STATE[record.result.status]
    return _PHASE_STATE[record.phase]


def _status(record: TaskRecord, transition: Transition | None = None) -> dict[str, Any]:
    transition = transition or record.transitions[-1]
    finished = transition.phase is TaskPhase.FINISHED
    result = record.result if finished else None
    state = _FINAL_STATE[result.status] if result is not None else _PHASE_STATE[transition.phase]
    status: dict[str, Any] = {"state": state, "timestamp": _timestamp(transition.at)}
    if result is not None and result.error is not None:
        status["message"] = {
            "messageId": f"{record.id}-status",
            "contextId": context_id(record),
            "taskId": str(record.id),
            "role": "ROLE_AGENT",
            "parts": [{"text": f"{result.error.type}: {result.error.message}"}],
        }
    return status


def _artifact(result: ExecutionResult) -> dict[str, Any] | None:
    if result.output is None:
        return None
    part: dict[str, Any] = (
        {"text": result.output, "mediaType": "text/plain"}
        if isinstance(result.output, str)
        else {"data": result.output, "mediaType": "application/json"}
    )
    return {"artifactId": "output", "name": "output", "parts": [part]}


def _relaybus_metadata(record: TaskRecord) -> dict[str, Any]:
    result = record.result
    summary: dict[str, Any] = {"phase": record.phase.value, "agent": record.task.agent}
    if result is not None:
        summary.update(result.model_dump(mode="json", exclude={"output", "task_id"}))
    return {"relaybus": summary}


def a2a_task(record: TaskRecord, *, history_length: int | None = None) -> dict[str, Any]:
    """The A2A 1.0 ``Task`` of ``record`` now; ``history_length`` limits ``history`` (the user's message)."""
    task: dict[str, Any] = {
        "id": str(record.id),
        "contextId": context_id(record),
        "status": _status(record),
        "metadata": _relaybus_metadata(record),
    }
    artifact = _artifact(record.result) if record.result is not None else None
    if artifact is not None:
        task["artifacts"] = [artifact]
    message = record.context.get(MESSAGE_KEY)
    history = [message] if message is not None else []
    if history_length is not None:
        history = history[len(history) - history_length :] if history_length else []
    if history:
        task["history"] = history
    return task


def _cursor(record: TaskRecord) -> tuple[str, str]:
    return record.updated_at.isoformat(), str(record.id)


def _decode_token(token: str) -> tuple[str, str]:
    try:
        updated, _, task_id = base64.urlsafe_b64decode(token.encode()).decode().partition("|")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        updated, task_id = "", ""
    if not updated or not task_id:
        raise A2AError(ErrorCode.INVALID_PARAMS, "pageToken is not one this gateway gave out")
    return updated, task_id


def task_page(records: Iterable[TaskRecord], params: ListTasksParams) -> dict[str, Any]:
    """The ``ListTasksResponse`` for ``params`` over ``records``: filtered by context, state and time, the
    most recently updated first, one page from the cursor ``pageToken`` on."""
    wanted = [
        record
        for record in records
        if (params.context_id is None or context_id(record) == params.context_id)
        and (params.status in (None, "", "TASK_STATE_UNSPECIFIED") or task_state(record) == params.status)
        and (params.status_timestamp_after is None or record.updated_at >= params.status_timestamp_after)
    ]
    wanted.sort(key=_cursor, reverse=True)
    total = len(wanted)
    if params.page_token:
        after = _decode_token(params.page_token)
        wanted = [record for record in wanted if _cursor(record) < after]
    page = wanted[: params.page_size]
    tasks = []
    for record in page:
        task = a2a_task(record, history_length=params.history_length)
        if not params.include_artifacts:
            task.pop("artifacts", None)
        tasks.append(task)
    next_token = ""
    if len(wanted) > params.page_size:
        next_token = base64.urlsafe_b64encode("|".join(_cursor(page[-1])).encode()).decode()
    return {"tasks": tasks, "nextPageToken": next_token, "pageSize": params.page_size, "totalSize": total}


def stream_events(record: TaskRecord, transition: Transition) -> list[dict[str, Any]]:
    """The A2A 1.0 ``StreamResponse`` objects telling a stream about ``transition`` (after the first event,
    which is the whole Task): the artifact (when finished with an output), then the status update."""
    events: list[dict[str, Any]] = []
    ids = {"taskId": str(record.id), "contextId": context_id(record)}
    if transition.phase is TaskPhase.FINISHED and record.result is not None:
        artifact = _artifact(record.result)
        if artifact is not None:
            events.append({"artifactUpdate": {**ids, "artifact": artifact, "lastChunk": True}})
    update = {**ids, "status": _status(record, transition)}
    if transition.phase is TaskPhase.FINISHED:
        update["metadata"] = _relaybus_metadata(record)
    events.append({"statusUpdate": update})
    return events


# -- A2A 0.3 ------------------------------------------------------------------------------------------------
_STATE_V03 = {
    "TASK_STATE_SUBMITTED": "submitted",
    "TASK_STATE_WORKING": "working",
    "TASK_STATE_COMPLETED": "completed",
    "TASK_STATE_FAILED": "failed",
    "TASK_STATE_CANCELED": "canceled",
    "TASK_STATE_REJECTED": "rejected",
    "TASK_STATE_INPUT_REQUIRED": "input-required",
    "TASK_STATE_AUTH_REQUIRED": "auth-required",
}
_ROLE_V03 = {"ROLE_USER": "user", "ROLE_AGENT": "agent"}


def _part_v03(part: dict[str, Any]) -> dict[str, Any]:
    extra = {"metadata": part["metadata"]} if part.get("metadata") else {}
    if "text" in part:
        return {"kind": "text", "text": part["text"], **extra}
    if "data" in part:
        data = part["data"]
        return {"kind": "data", "data": data if isinstance(data, dict) else {"value": data}, **extra}
    file = {"bytes": part["raw"]} if "raw" in part else {"uri": part.get("url")}
    file.update({k: part[v] for k, v in (("name", "filename"), ("mimeType", "mediaType")) if part.get(v)})
    return {"kind": "file", "file": file, **extra}


def _message_v03(message: dict[str, Any]) -> dict[str, Any]:
    return {
        **message,
        "kind": "message",
        "role": _ROLE_V03.get(message.get("role", ""), "user"),
        "parts": [_part_v03(p) for p in message.get("parts", [])],
    }


def _status_v03(status: dict[str, Any]) -> dict[str, Any]:
    converted = {**status, "state": _STATE_V03.get(status["state"], "unknown")}
    if "message" in status:
        converted["message"] = _message_v03(status["message"])
    return converted


def _artifact_v03(artifact: dict[str, Any]) -> dict[str, Any]:
    return {**artifact, "parts": [_part_v03(p) for p in artifact["parts"]]}


def _task_v03(task: dict[str, Any]) -> dict[str, Any]:
    converted = {**task, "kind": "task", "status": _status_v03(task["status"])}
    if "artifacts" in task:
        converted["artifacts"] = [_artifact_v03(a) for a in task["artifacts"]]
    if "history" in task:
        converted["history"] = [_message_v03(m) for m in task["history"]]
    return converted


def to_v03(response: dict[str, Any]) -> dict[str, Any]:
    """An A2A 1.0 result (a ``Task``, or a ``SendMessageResponse`` / ``StreamResponse`` wrapping one of a
    task, a status update or an artifact update) in its A2A 0.3 form (unwrapped, with ``kind``)."""
    if "task" in response:
        return _task_v03(response["task"])
    if "statusUpdate" in response:
        update = response["statusUpdate"]
        state = update["status"]["state"]
        status = _status_v03(update["status"])
        return {**update, "kind": "status-update", "status": status, "final": state in TERMINAL_STATES}
    if "artifactUpdate" in response:
        update = response["artifactUpdate"]
        return {**update, "kind": "artifact-update", "artifact": _artifact_v03(update["artifact"])}
    return _task_v03(response)
