"""The contract between processes: tasks, their results, task events, cancel requests and worker heartbeats.

All are frozen pydantic v2 models that travel as UTF-8 JSON (``model_dump_json``) with the AMQP header
``relaybus-schema: 1`` (see :mod:`relaybus.bus.codec`). Unknown fields are refused, unless the sender declares
a newer minor version of the schema (``relaybus-schema: 1.<minor>``): then they are ignored, so callers and
workers can be upgraded one at a time (the rule is :mod:`relaybus.bus.compat`). Timestamps must carry a time
zone. ``model_json_schema()`` gives what a reader requires (a task's ``id`` included) and the name patterns.
"""

from __future__ import annotations

import enum
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self
from uuid import UUID, uuid4

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue, field_validator

from relaybus.exceptions import ConfigError

__all__ = [
    "SCHEMA_MINOR",
    "SCHEMA_VERSION",
    "AgentTask",
    "CancelRequest",
    "ErrorInfo",
    "ExecutionResult",
    "ExecutionStatus",
    "TaskEvent",
    "TaskEventKind",
    "Usage",
    "WorkerHeartbeat",
]

SCHEMA_VERSION = 1
"""Major version of the wire format; sent in the ``relaybus-schema`` header and checked on receipt."""
SCHEMA_MINOR = 0
"""Minor version: raised by each release that adds optional fields (see :mod:`relaybus.bus.compat`)."""

_WORD = r"[A-Za-z0-9_-]+"
TOPIC_RE = re.compile(rf"^{_WORD}(\.{_WORD})*$")
NAME_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}$")
MAX_TOPIC_LEN = 200
MAX_CANCEL_REASON = 1000
_NAME = Annotated[str, Field(json_schema_extra={"pattern": NAME_RE.pattern})]


def _require_id(schema: dict[str, Any]) -> None:
    # ``id`` has a default for Python callers, but a worker refuses a task without one (a redelivery would
    # run again under a new id): on the wire it is required, and the schema says so.
    required = schema.setdefault("required", [])
    if "id" not in required:
        required.insert(0, "id")


MAX_EVENT_TEXT = 16_000
"""The longest ``text`` of one :class:`TaskEvent` (characters); a worker splits or cuts longer text."""


def _now() -> datetime:
    return datetime.now(UTC)


class ExecutionStatus(enum.StrEnum):
    """How a task ended."""

    SUCCESS = "success"
    FAILURE = "failure"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    REJECTED = "rejected"

    @property
    def ok(self) -> bool:
        return self is ExecutionStatus.SUCCESS


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="null")


class Usage(_Model):
    """Token usage and request count; add two with ``+``."""

    prompt_tokens: Annotated[int, Field(ge=0)] = 0
    completion_tokens: Annotated[int, Field(ge=0)] = 0
    requests: Annotated[int, Field(ge=0)] = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            requests=self.requests + other.requests,
        )


class ErrorInfo(_Model):
    """What went wrong: the error's type name, a message for people, and whether a retry could help."""

    type: Annotated[str, Field(max_length=200)]
    message: Annotated[str, Field(max_length=20_000)]
    retryable: bool = False


class AgentTask(_Model):
    """One unit of work for an agent.

    ``id`` is also the AMQP ``message_id`` and the idempotency key: a task delivered twice runs once.
    ``topic`` is dot-separated words (``code.review``), routed as ``task.<topic>``; ``agent`` addresses one
    agent by name instead (routed as ``agent.<name>``).
    """

    model_config = ConfigDict(json_schema_extra=_require_id)

    id: UUID = Field(default_factory=uuid4)
    topic: Annotated[
        str, Field(min_length=1, max_length=MAX_TOPIC_LEN, json_schema_extra={"pattern": TOPIC_RE.pattern})
    ]
    prompt: str = ""
    input: dict[str, JsonValue] = Field(default_factory=dict)
    agent: _NAME | None = None
    mode: _NAME | None = None
    depends_on: tuple[UUID, ...] = ()
    timeout_s: Annotated[float, Field(gt=0, le=7 * 24 * 3600)] | None = None
    priority: Annotated[int, Field(ge=0, le=9)] = 0
    metadata: dict[str, str] = Field(default_factory=dict)
    created_at: AwareDatetime = Field(default_factory=_now)

    @field_validator("topic")
    @classmethod
    def _check_topic(cls, value: str) -> str:
        if not TOPIC_RE.match(value):
            raise ValueError(
                "topic must be dot-separated words of letters, digits, '_' or '-' (e.g. 'code.review'); "
                "wildcards belong in an agent's topic patterns, not in a task"
            )
        return value

    @field_validator("agent", "mode")
    @classmethod
    def _check_name(cls, value: str | None) -> str | None:
        if value is not None and not NAME_RE.match(value):
            raise ValueError("must be 1-100 characters of letters, digits, '_', '-' or '.'")
        return value

    @property
    def routing_key(self) -> str:
        """The AMQP routing key this task is published with."""
        return f"agent.{self.agent}" if self.agent else f"task.{self.topic}"


class ExecutionResult(_Model):
    """The outcome of one task. ``output`` is any JSON value; ``error`` is set unless the task succeeded."""

    task_id: UUID
    status: ExecutionStatus
    output: JsonValue = None
    error: ErrorInfo | None = None
    agent: str | None = None
    worker: str | None = None
    started_at: AwareDatetime | None = None
    finished_at: AwareDatetime | None = None
    attempts: Annotated[int, Field(ge=0)] = 1
    usage: Usage = Field(default_factory=Usage)

    @property
    def ok(self) -> bool:
        return self.status is ExecutionStatus.SUCCESS

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    @classmethod
    def success(cls, task_id: UUID, output: JsonValue = None, **fields: Any) -> Self:
        return cls(task_id=task_id, status=ExecutionStatus.SUCCESS, output=output, **fields)

    @classmethod
    def failed(
        cls,
        task_id: UUID,
        status: ExecutionStatus,
        error_type: str,
        message: str,
        *,
        retryable: bool = False,
        **fields: Any,
    ) -> Self:
        """A result that did not succeed; ``message`` is truncated to fit :class:`ErrorInfo`."""
        if status is ExecutionStatus.SUCCESS:
            raise ConfigError("failed() needs a status other than SUCCESS; build a SUCCESS result directly")
        error = ErrorInfo(type=error_type[:200], message=message[:20_000], retryable=retryable)
        return cls(task_id=task_id, status=status, error=error, **fields)


TaskEventKind = Literal["delta", "progress", "tool_call", "tool_result", "result"]
"""What a :class:`TaskEvent` reports: model text, a progress line, an agent loop step, or the end."""


class TaskEvent(_Model):
    """One step of a running task, sent by its worker to the caller that asked to stream it.

    ``seq`` numbers a task's events 1, 2, ... in the order they were sent; a missing number is an event
    lost (events are best effort). ``kind``: ``delta`` (the next piece of the model's text), ``progress`` (a
    line from the agent, ``ctx.emit``), ``tool_call`` / ``tool_result`` (the agent loop's steps), ``result``
    (the last one, made by the caller from the task's result, which it carries in ``result``).
    ``sub_task_id`` is set on the events of a delegated task forwarded to the original caller: the id of the
    task that produced them. ``data`` is any JSON value (the tool call's name and arguments, say).
    """

    task_id: UUID
    seq: Annotated[int, Field(ge=1)]
    kind: TaskEventKind
    text: Annotated[str, Field(max_length=MAX_EVENT_TEXT)] = ""
    data: JsonValue = None
    sub_task_id: UUID | None = None
    agent: Annotated[str, Field(max_length=100)] | None = None
    result: ExecutionResult | None = None


class CancelRequest(_Model):
    """Asks whichever worker runs ``task_id`` to stop it; published on ``event.relaybus.cancel``."""

    task_id: UUID
    reason: Annotated[str, Field(max_length=MAX_CANCEL_REASON)] = "cancelled by the orchestrator"


MAX_HEARTBEAT_TASKS = 50
"""At most this many running task ids in one heartbeat (``running``); ``in_flight`` still counts them all."""


class WorkerHeartbeat(BaseModel):
    """What a worker says about itself. ``status`` is ``running``, ``draining`` or ``stopped``; ``llm`` the
    provider and model its executor uses (``openai/gpt-4o-mini``) where known; ``running`` the ids of (up to
    :data:`MAX_HEARTBEAT_TASKS` of) the tasks it holds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    worker: Annotated[str, Field(max_length=300)]
    host: Annotated[str, Field(max_length=255)]
    pid: Annotated[int, Field(ge=0)]
    agents: tuple[Annotated[str, Field(max_length=100)], ...]
    in_flight: Annotated[int, Field(ge=0)]
    capacity: Annotated[int, Field(ge=1)]
    processed: Annotated[int, Field(ge=0)] = 0
    status: Literal["running", "draining", "stopped"] = "running"
    interval_s: Annotated[float, Field(gt=0)]
    timestamp: AwareDatetime = Field(default_factory=_now)
    broker: Annotated[str | None, Field(max_length=300)] = None
    """``host:port`` of the RabbitMQ node the worker is connected to (a cluster: which one); left out of the
    JSON when unknown (an in-process bus), so such heartbeats read as before."""
    llm: Annotated[str, Field(max_length=300)] | None = None
    running: Annotated[tuple[UUID, ...], Field(max_length=MAX_HEARTBEAT_TASKS)] = ()
