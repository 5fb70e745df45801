"""A running task's :class:`~relaybus.TaskEvent` s as A2A 1.0 stream responses.

Model text (``delta``) is an artifact update of the artifact ``stream`` (``stream-<sub task id>`` for the
text of a delegated task), ``append`` after its first chunk, never ``lastChunk`` (the whole output follows as
the ``output`` artifact when the task ends). Every other event (``progress``, ``tool_call``,
``tool_result``) is a status update in state ``TASK_STATE_WORKING`` whose agent message carries the event's
text as a text part and its ``data`` as a data part. Both carry ``metadata.relaybus`` = the event's
``seq``, ``kind``, ``agent`` and ``subTaskId``, so a client sees gaps and who said what.
"""

from __future__ import annotations

from typing import Any

from relaybus.messages import TaskEvent

from .a2a_mapping import context_id
from .tasks import TaskRecord

__all__ = ["EventMapper"]


class EventMapper:
    """Maps the events of one stream of ``record`` (remembering which artifacts were begun)."""

    def __init__(self, record: TaskRecord) -> None:
        self._ids = {"taskId": str(record.id), "contextId": context_id(record)}
        self._begun: set[str] = set()

    def __call__(self, event: TaskEvent) -> dict[str, Any]:
        """The A2A 1.0 ``StreamResponse`` of ``event``."""
        metadata = {"relaybus": _summary(event)}
        if event.kind == "delta":
            artifact_id = "stream" if event.sub_task_id is None else f"stream-{event.sub_task_id}"
            append = artifact_id in self._begun
            self._begun.add(artifact_id)
            artifact = {"artifactId": artifact_id, "name": artifact_id, "parts": [{"text": event.text}]}
            update = {**self._ids, "artifact": artifact, "append": append, "lastChunk": False}
            return {"artifactUpdate": {**update, "metadata": metadata}}
        parts: list[dict[str, Any]] = [{"text": event.text}]
        if event.data is not None:
            parts.append({"data": event.data, "mediaType": "application/json"})
        message = {
            "messageId": f"{event.task_id}-event-{event.seq}",
            **self._ids,
            "role": "ROLE_AGENT",
            "parts": parts,
            "metadata": metadata,
        }
        status = {"state": "TASK_STATE_WORKING", "message": message}
        return {"statusUpdate": {**self._ids, "status": status, "metadata": metadata}}


def _summary(event: TaskEvent) -> dict[str, Any]:
    summary: dict[str, Any] = {"seq": event.seq, "kind": event.kind}
    if event.agent is not None:
        summary["agent"] = event.agent
    if event.sub_task_id is not None:
        summary["subTaskId"] = str(event.sub_task_id)
    return summary
