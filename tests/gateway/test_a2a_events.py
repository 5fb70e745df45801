"""Task events as A2A stream responses: text as chunks of the ``stream`` artifact, steps as WORKING status
updates with the event in ``metadata.relaybus``; and their A2A 0.3 form."""

from __future__ import annotations

import uuid

from relaybus import AgentTask, TaskEvent
from relaybus.gateway.a2a_events import EventMapper
from relaybus.gateway.a2a_mapping import to_v03
from relaybus.gateway.tasks import TaskRecord

TASK = AgentTask(topic="a2a.x")
SUB = uuid.uuid4()


def event(seq: int, kind: str, text: str = "", **fields: object) -> TaskEvent:
    return TaskEvent(task_id=TASK.id, seq=seq, kind=kind, text=text, **fields)  # type: ignore[arg-type]


def test_text_chunks_append_to_one_artifact_per_task_that_wrote_them() -> None:
    mapped = EventMapper(TaskRecord(TASK))
    updates = [
        mapped(event(1, "delta", "a")),
        mapped(event(2, "delta", "b")),
        mapped(event(3, "delta", "c", sub_task_id=SUB, agent="helper")),
    ]
    chunks = [u["artifactUpdate"] for u in updates]
    assert [c["artifact"]["artifactId"] for c in chunks] == ["stream", "stream", f"stream-{SUB}"]
    assert [c["append"] for c in chunks] == [False, True, False]
    assert {c["lastChunk"] for c in chunks} == {False}
    assert chunks[2]["metadata"]["relaybus"] == {
        "seq": 3,
        "kind": "delta",
        "agent": "helper",
        "subTaskId": str(SUB),
    }
    assert chunks[0]["taskId"] == str(TASK.id)


def test_a_step_is_a_working_status_update_with_text_and_data_parts() -> None:
    update = EventMapper(TaskRecord(TASK))(event(4, "tool_call", "grep", data={"arguments": "{}"}))[
        "statusUpdate"
    ]
    assert update["status"]["state"] == "TASK_STATE_WORKING"
    message = update["status"]["message"]
    assert message["role"] == "ROLE_AGENT"
    assert message["parts"] == [
        {"text": "grep"},
        {"data": {"arguments": "{}"}, "mediaType": "application/json"},
    ]
    assert update["metadata"]["relaybus"]["kind"] == "tool_call"
    old = to_v03({"statusUpdate": update})
    assert old["kind"] == "status-update"
    assert old["final"] is False
    assert old["status"]["state"] == "working"
    assert old["status"]["message"]["parts"][1]["kind"] == "data"


def test_a_text_chunk_in_its_a2a_0_3_form() -> None:
    old = to_v03(EventMapper(TaskRecord(TASK))(event(1, "delta", "hi")))
    assert old["kind"] == "artifact-update"
    assert old["artifact"]["parts"] == [{"kind": "text", "text": "hi"}]
