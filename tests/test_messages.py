"""AgentTask and ExecutionResult: the JSON contract between processes."""

from __future__ import annotations

import uuid
from datetime import datetime
from uuid import uuid4

import pytest
from pydantic import BaseModel, ValidationError

from relaybus.exceptions import ConfigError
from relaybus.messages import AgentTask, ErrorInfo, ExecutionResult, ExecutionStatus, Usage


def test_task_round_trips_through_json() -> None:
    task = AgentTask(
        topic="code.review",
        prompt="review this",
        input={"code": "print(1)", "lines": [1, 2], "nested": {"ok": True}},
        depends_on=(uuid.uuid4(),),
        timeout_s=30,
        priority=7,
        metadata={"team": "a"},
    )
    assert AgentTask.model_validate_json(task.model_dump_json()) == task


def test_result_round_trips_through_json() -> None:
    task_id = uuid.uuid4()
    result = ExecutionResult.failed(
        task_id, ExecutionStatus.TIMEOUT, "TimeoutError", "took too long", retryable=True, attempts=3
    )
    again = ExecutionResult.model_validate_json(result.model_dump_json())
    assert again == result
    assert again.error == ErrorInfo(type="TimeoutError", message="took too long", retryable=True)
    assert not again.ok


def test_each_task_gets_its_own_id() -> None:
    assert AgentTask(topic="a").id != AgentTask(topic="a").id


@pytest.mark.parametrize("topic", ["", "a..b", ".a", "a.", "a.*", "a.#", "has space", "ü"])
def test_bad_topics_are_refused(topic: str) -> None:
    with pytest.raises(ValidationError):
        AgentTask(topic=topic)


@pytest.mark.parametrize("field", [{"priority": 10}, {"priority": -1}, {"timeout_s": 0}, {"agent": "a b"}])
def test_out_of_range_fields_are_refused(field: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        AgentTask(topic="a", **field)  # type: ignore[arg-type]


def test_unknown_fields_are_refused_not_dropped() -> None:
    with pytest.raises(ValidationError, match="extra"):
        AgentTask.model_validate({"topic": "a", "surprise": 1})


def test_tasks_are_frozen() -> None:
    task = AgentTask(topic="a")
    with pytest.raises(ValidationError):
        task.prompt = "changed"  # type: ignore[misc]


def test_routing_key_addresses_topic_or_agent() -> None:
    assert AgentTask(topic="code.review").routing_key == "task.code.review"
    assert AgentTask(topic="code.review", agent="reviewer").routing_key == "agent.reviewer"


def test_usage_adds_up() -> None:
    total = Usage(prompt_tokens=1, completion_tokens=2, requests=1) + Usage(prompt_tokens=10, requests=2)
    assert total == Usage(prompt_tokens=11, completion_tokens=2, requests=3)
    assert total.total_tokens == 13


def test_failed_refuses_success_and_truncates_long_messages() -> None:
    with pytest.raises(ConfigError, match="SUCCESS"):
        ExecutionResult.failed(uuid.uuid4(), ExecutionStatus.SUCCESS, "x", "y")
    result = ExecutionResult.failed(uuid.uuid4(), ExecutionStatus.FAILURE, "E", "m" * 50_000)
    assert result.error is not None
    assert len(result.error.message) == 20_000


def test_duration_is_known_once_finished() -> None:
    from datetime import UTC, datetime, timedelta

    start = datetime.now(UTC)
    result = ExecutionResult.success(
        uuid.uuid4(), 1, started_at=start, finished_at=start + timedelta(seconds=2)
    )
    assert result.duration_s == pytest.approx(2.0)
    assert ExecutionResult.success(uuid.uuid4()).duration_s is None


# -- the machine-readable contract ---------------------------------------------------------------------------


def test_the_task_schema_requires_what_a_worker_requires_and_states_the_name_patterns() -> None:
    import re

    from relaybus.messages import NAME_RE, TOPIC_RE

    schema = AgentTask.model_json_schema()
    assert schema["required"] == ["id", "topic"]
    assert schema["properties"]["topic"]["pattern"] == TOPIC_RE.pattern
    for field in ("agent", "mode"):
        assert {"type": "string", "pattern": NAME_RE.pattern} in schema["properties"][field]["anyOf"]
    assert schema["properties"]["created_at"]["format"] == "date-time"
    assert re.match(schema["properties"]["topic"]["pattern"], "code.review")


@pytest.mark.parametrize(
    ("model", "fields"),
    [
        (AgentTask, {"topic": "a", "created_at": datetime(2026, 1, 1)}),
        (ExecutionResult, {"task_id": uuid4(), "status": "success", "started_at": datetime(2026, 1, 1)}),
        (ExecutionResult, {"task_id": uuid4(), "status": "success", "finished_at": "2026-01-01T00:00:00"}),
    ],
)
def test_timestamps_without_a_time_zone_are_refused(
    model: type[BaseModel], fields: dict[str, object]
) -> None:
    with pytest.raises(ValidationError, match="timezone"):
        model.model_validate(fields)
