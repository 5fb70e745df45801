"""Wire format: every message relaybus puts on the bus, encoded and checked on receipt in this one module.

Tasks, results, events, cancel requests, worker heartbeats and pings travel as UTF-8 JSON with the header
``relaybus-schema``; each has an ``encode_*`` function here, and each with a payload a decoder. A body is
refused (``InvalidMessage`` with a reason fit for the ``relaybus-error`` header) when it is over the size
limit, looks like pickle, is not UTF-8, is not JSON, carries no or an unknown ``relaybus-schema`` version, or
does not validate against the model. Nothing is ever unpickled. Which versions and fields a reader accepts
(the rule for rolling upgrades) is :mod:`relaybus.bus.compat`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TypeVar
from uuid import UUID

from pydantic import BaseModel, JsonValue, RootModel, TypeAdapter, ValidationError

from relaybus.exceptions import ConfigError, InvalidMessage
from relaybus.messages import (
    MAX_CANCEL_REASON,
    SCHEMA_MINOR,
    TOPIC_RE,
    AgentTask,
    CancelRequest,
    ExecutionResult,
    TaskEvent,
    WorkerHeartbeat,
)

from .base import (
    CANCEL_ROUTING_KEY,
    DEFAULT_EXCHANGE,
    EVENT_HEADER,
    EVENTS_TO_HEADER,
    EXCHANGE,
    SCHEMA_HEADER,
    STREAM_HEADER,
    WORKER_EVENT_PREFIX,
    Delivery,
    HeaderValue,
    OutgoingMessage,
    event_routing_key,
)
from .compat import check_content_type, ignoring_unknown_fields, schema_header_value, schema_version
from .core import truncate
from .replies import is_events_queue, is_reply_queue

__all__ = [
    "CONTROL_MAX_BODY_BYTES",
    "DEFAULT_MAX_BODY_BYTES",
    "EVENT_MAX_BODY_BYTES",
    "HEARTBEAT_ROUTING_KEY",
    "PING_ROUTING_KEY",
    "STOPPED_ROUTING_KEY",
    "WORKER_EVENTS_PATTERN",
    "decode",
    "decode_cancel",
    "decode_delivery",
    "decode_event",
    "decode_heartbeat",
    "decode_task_event",
    "encode_cancel",
    "encode_event",
    "encode_heartbeat",
    "encode_ping",
    "encode_result",
    "encode_task",
    "encode_task_event",
    "is_task_event",
    "stream_destination",
    "wants_stream",
]

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
CONTROL_MAX_BODY_BYTES = 64 * 1024
"""Size limit of a cancel request or a heartbeat: small by nature, so a big one is refused early."""
EVENT_MAX_BODY_BYTES = 128 * 1024
"""Size limit of a task event (its text is at most 16,000 characters, its data a few KiB)."""
HEARTBEAT_ROUTING_KEY = f"{WORKER_EVENT_PREFIX}.heartbeat"
STOPPED_ROUTING_KEY = f"{WORKER_EVENT_PREFIX}.stopped"
PING_ROUTING_KEY = f"{WORKER_EVENT_PREFIX}.ping"
"""Publishing anything here asks every live worker to send a heartbeat now."""
WORKER_EVENTS_PATTERN = f"{WORKER_EVENT_PREFIX}.*"
_MAX_REASON = 500
_JSON: TypeAdapter[JsonValue] = TypeAdapter(JsonValue)
# The one place a message gets its schema version; each message gets a copy (``dict(_SCHEMA_HEADERS)``), as
# a bus or a caller may add headers to it.
_SCHEMA_HEADERS: Mapping[str, HeaderValue] = MappingProxyType({SCHEMA_HEADER: schema_header_value()})
M = TypeVar("M", bound=BaseModel)

# Pickle protocol 2+ starts with PROTO (0x80); protocols 0-1 start with an opcode such as '(' or ']' and
# end with STOP ('.'). JSON can't end in '.', so both are told apart without ever loading them.
_PICKLE_START = b"\x80"


class _Event(RootModel[JsonValue]):
    """An event's payload: any JSON value."""


def encode_task(
    task: AgentTask,
    *,
    reply_to: str | None,
    headers: Mapping[str, HeaderValue] | None = None,
    mandatory: bool = True,
) -> OutgoingMessage:
    """The message that carries ``task`` to its topic (or to the one agent it addresses)."""
    return OutgoingMessage(
        body=task.model_dump_json().encode(),
        routing_key=task.routing_key,
        exchange=EXCHANGE,
        message_id=str(task.id),
        correlation_id=str(task.id),
        reply_to=reply_to,
        headers={**_SCHEMA_HEADERS, **headers} if headers else dict(_SCHEMA_HEADERS),
        priority=task.priority,
        mandatory=mandatory,
    )


def encode_result(result: ExecutionResult, *, reply_to: str) -> OutgoingMessage:
    """The message that carries ``result`` back to the queue the task named in ``reply_to``."""
    return OutgoingMessage(
        body=result.model_dump_json().encode(),
        routing_key=reply_to,
        exchange=DEFAULT_EXCHANGE,
        message_id=f"result-{result.task_id}",
        correlation_id=str(result.task_id),
        headers=dict(_SCHEMA_HEADERS),
        mandatory=True,
    )


def encode_event(
    topic: str, payload: JsonValue | BaseModel, *, correlation_id: str | None = None
) -> OutgoingMessage:
    """The event ``payload`` (JSON, or a pydantic model) on ``event.<topic>``: fire-and-forget, so not
    mandatory (an event nobody listens to is dropped). Raises ConfigError for a topic that is not
    dot-separated words."""
    if not TOPIC_RE.match(topic):
        raise ConfigError(f"event topic {topic!r} must be dot-separated words, e.g. 'review.done'")
    body = payload.model_dump_json().encode() if isinstance(payload, BaseModel) else _JSON.dump_json(payload)
    return OutgoingMessage(
        body=body,
        routing_key=event_routing_key(topic),
        correlation_id=correlation_id,
        headers=dict(_SCHEMA_HEADERS),
        mandatory=False,
    )


def encode_task_event(event: TaskEvent, *, reply_to: str) -> OutgoingMessage:
    """The message that carries ``event`` to the caller's ``reply_to``: ``correlation_id`` = the task id,
    header ``relaybus-event: <kind>``; best effort, so neither mandatory nor persistent."""
    headers = dict(_SCHEMA_HEADERS)
    headers[EVENT_HEADER] = event.kind
    return OutgoingMessage(
        body=event.model_dump_json(exclude_defaults=True).encode(),
        routing_key=reply_to,
        exchange=DEFAULT_EXCHANGE,
        message_id=f"event-{event.task_id}-{event.seq}",
        correlation_id=str(event.task_id),
        headers=headers,
        mandatory=False,
        persistent=False,
    )


def is_task_event(headers: Mapping[str, HeaderValue]) -> bool:
    """Whether a message on a reply queue is a task event (it has the ``relaybus-event`` header) rather than
    a result."""
    return EVENT_HEADER in headers


def wants_stream(headers: Mapping[str, HeaderValue]) -> bool:
    """Whether a task's headers ask for its events (``relaybus-stream: 1``)."""
    value = headers.get(STREAM_HEADER)
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return value is not None and str(value).strip().lower() in ("1", "true", "yes")


def stream_destination(reply_to: str | None, headers: Mapping[str, HeaderValue]) -> str | None:
    """Where a worker sends the events of a task with these ``reply_to`` and ``headers``: None when the task
    does not ask for them (``relaybus-stream: 1``); else its ``relaybus-events-to`` queue when that names an
    events queue (``relaybus.events.<32 hex digits>``), else its ``reply_to`` when that is a reply queue
    (callers from before events queues, and clients in other languages), else None."""
    if not wants_stream(headers):
        return None
    events_to = headers.get(EVENTS_TO_HEADER)
    if isinstance(events_to, bytes):
        events_to = events_to.decode("ascii", "replace")
    if isinstance(events_to, str) and is_events_queue(events_to):
        return events_to
    if reply_to and is_reply_queue(reply_to):
        return reply_to
    return None


def decode_task_event(
    body: bytes, headers: Mapping[str, HeaderValue], *, content_type: str | None = "application/json"
) -> TaskEvent:
    """A received task event (see :func:`encode_task_event`); raise :class:`InvalidMessage` if refused, also
    when it claims to be the ``result`` (a result travels as a result message, never as an event)."""
    event = decode(body, headers, TaskEvent, content_type=content_type, max_bytes=EVENT_MAX_BODY_BYTES)
    if event.kind == "result" or event.result is not None:
        raise InvalidMessage("a task event must not carry a result: results travel as result messages")
    return event


def encode_cancel(task_id: UUID, reason: str) -> OutgoingMessage:
    """The :class:`~relaybus.messages.CancelRequest` for ``task_id`` on ``event.relaybus.cancel``, for
    whichever worker runs it; not mandatory (no worker may be up). ``reason`` is cut to 1000 characters."""
    request = CancelRequest(task_id=task_id, reason=reason[:MAX_CANCEL_REASON])
    return OutgoingMessage(
        body=request.model_dump_json().encode(),
        routing_key=CANCEL_ROUTING_KEY,
        headers=dict(_SCHEMA_HEADERS),
        mandatory=False,
    )


def encode_heartbeat(beat: WorkerHeartbeat) -> OutgoingMessage:
    """The event carrying ``beat``, on ``event.relaybus.worker.stopped`` for a stopped worker and on
    ``event.relaybus.worker.heartbeat`` otherwise: not mandatory (nobody may be listening), not persistent."""
    return OutgoingMessage(
        body=beat.model_dump_json(exclude={"broker"} if beat.broker is None else None).encode(),
        routing_key=STOPPED_ROUTING_KEY if beat.status == "stopped" else HEARTBEAT_ROUTING_KEY,
        message_id=f"heartbeat-{beat.worker}-{beat.timestamp.timestamp():.3f}",
        headers=dict(_SCHEMA_HEADERS),
        mandatory=False,
        persistent=False,
    )


def encode_ping() -> OutgoingMessage:
    """The ping asking every live worker for a heartbeat now. It carries no data (the body is ``{}``), so
    it has no decoder: a worker acts on the routing key alone."""
    return OutgoingMessage(
        body=b"{}",
        routing_key=PING_ROUTING_KEY,
        headers=dict(_SCHEMA_HEADERS),
        mandatory=False,
        persistent=False,
    )


def _validation_reason(model: type[BaseModel], exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:3]:
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{loc}: {err['msg']}")
    more = exc.error_count() - len(parts)
    tail = f" (+{more} more)" if more > 0 else ""
    first = exc.errors(include_url=False, include_input=False)[0]["type"] if exc.error_count() else ""
    if first.startswith("json_"):
        return f"body is not valid JSON: {parts[0]}"
    return f"invalid {model.__name__}: " + "; ".join(parts) + tail


def decode(
    body: bytes,
    headers: Mapping[str, HeaderValue],
    model: type[M],
    *,
    content_type: str | None = "application/json",
    max_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> M:
    """Check and parse one received body; raise :class:`InvalidMessage` with a short reason if refused."""
    size = len(body)
    if size > max_bytes:
        raise InvalidMessage(f"body too large: {size} bytes, the limit is {max_bytes}")
    if body.startswith(_PICKLE_START) or (body[:1] in (b"(", b"]", b"}", b"c") and body.endswith(b".")):
        raise InvalidMessage("body looks like pickle data; relaybus never unpickles, send JSON")
    check_content_type(content_type)
    _, minor = schema_version(headers)
    try:
        return model.model_validate_json(body)  # refuses invalid UTF-8 itself
    except (ValueError, RecursionError) as exc:  # ValidationError, or e.g. nesting too deep for the parser
        # UTF-8 is checked only now, to word the reason: decoding every body first cost a copy per message.
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as bad:
            raise InvalidMessage(f"body is not UTF-8: invalid byte at offset {bad.start}") from None
        if isinstance(exc, ValidationError):
            if minor > SCHEMA_MINOR and (known := ignoring_unknown_fields(model, body, exc)) is not None:
                return known  # a newer minor's optional fields: ignored (see relaybus.bus.compat)
            raise InvalidMessage(truncate(_validation_reason(model, exc), _MAX_REASON)) from None
        raise InvalidMessage(truncate(f"body is not valid JSON: {exc}", _MAX_REASON)) from None


def decode_event(
    body: bytes,
    headers: Mapping[str, HeaderValue],
    *,
    content_type: str | None = "application/json",
    max_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> JsonValue:
    """The JSON payload of an event (see :func:`encode_event`); raise :class:`InvalidMessage` if refused."""
    return decode(body, headers, _Event, content_type=content_type, max_bytes=max_bytes).root


def decode_cancel(
    body: bytes, headers: Mapping[str, HeaderValue], *, content_type: str | None = "application/json"
) -> CancelRequest:
    """A received cancel request (see :func:`encode_cancel`); raise :class:`InvalidMessage` if refused."""
    return decode(body, headers, CancelRequest, content_type=content_type, max_bytes=CONTROL_MAX_BODY_BYTES)


def decode_heartbeat(
    body: bytes, headers: Mapping[str, HeaderValue], *, content_type: str | None = "application/json"
) -> WorkerHeartbeat:
    """A received heartbeat (see :func:`encode_heartbeat`); raise :class:`InvalidMessage` if refused."""
    return decode(body, headers, WorkerHeartbeat, content_type=content_type, max_bytes=CONTROL_MAX_BODY_BYTES)


async def decode_delivery(
    delivery: Delivery, model: type[M], *, max_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> M | None:
    """Decode ``delivery`` as ``model``; if it is refused, dead-letter it with the reason and return None."""
    try:
        return decode(
            delivery.body, delivery.headers, model, content_type=delivery.content_type, max_bytes=max_bytes
        )
    except InvalidMessage as exc:
        await delivery.dead_letter(exc.reason)
        return None
