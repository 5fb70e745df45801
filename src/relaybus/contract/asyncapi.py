"""The AsyncAPI 3.0 document of the wire contract, generated from the code: ``relaybus schema asyncapi``.

Channels are the AMQP routing keys and queues of DESIGN.md (tasks ``task.{topic}`` and ``agent.{name}`` on the
topic exchange ``relaybus``, the agent queues ``relaybus.agent.{name}``, results to ``{reply_to}`` on the
default exchange, events, cancels, heartbeats, dead letters), each with its AMQP binding (0.3.0). Messages
carry their payload schema (from the pydantic models), their application headers, and, under the extension
``x-amqp-properties``, the AMQP basic properties a sender sets and a reader checks (AsyncAPI has no field of
its own for them). docs/asyncapi.yaml is this document; a test keeps them equal.
"""

from __future__ import annotations

from typing import Any

from relaybus.bus.base import (
    CANCEL_ROUTING_KEY,
    DEAD_AT_HEADER,
    DEAD_LETTER_EXCHANGE,
    DEAD_LETTER_QUEUE,
    DEADLINE_HEADER,
    DEFAULT_DELIVERY_LIMIT,
    DELEGATION_HEADER,
    ERROR_HEADER,
    EVENT_HEADER,
    EVENTS_TO_HEADER,
    EXCHANGE,
    ORIGINAL_EXCHANGE_HEADER,
    ORIGINAL_QUEUE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
    SCHEMA_HEADER,
    STREAM_HEADER,
    TRACEPARENT_HEADER,
)
from relaybus.bus.codec import (
    CONTROL_MAX_BODY_BYTES,
    DEFAULT_MAX_BODY_BYTES,
    HEARTBEAT_ROUTING_KEY,
    PING_ROUTING_KEY,
    STOPPED_ROUTING_KEY,
)
from relaybus.bus.replies import DIRECT_REPLY_TO, EVENTS_QUEUE_PREFIX, EVENTS_QUEUE_RE, REPLY_QUEUE_PREFIX
from relaybus.bus.signing import SIGNATURE_HEADER
from relaybus.messages import NAME_RE, SCHEMA_MINOR, SCHEMA_VERSION, TOPIC_RE

from .schemas import model_schemas

__all__ = ["AGENT_QUEUE_ARGUMENTS", "asyncapi_document"]

BINDING_VERSION = "0.3.0"
AGENT_QUEUE_ARGUMENTS: dict[str, Any] = {
    "x-queue-type": "quorum",
    "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
    "x-dead-letter-strategy": "at-least-once",
    "x-overflow": "reject-publish",
    "x-delivery-limit": DEFAULT_DELIVERY_LIMIT,
}
"""The arguments of every ``relaybus.agent.<name>`` queue (as ``AmqpBus.declare_queue`` sets them): a
foreign worker declaring the queue first must use exactly these, or RabbitMQ refuses the other side."""
_JSON = "application/json"
_REF = "#/components/{kind}/{name}"


def _ref(kind: str, name: str) -> dict[str, str]:
    if kind == "channels":  # operations name the root channels, not components
        return {"$ref": f"#/channels/{name}"}
    return {"$ref": _REF.format(kind=kind, name=name)}


def _exchange(name: str, kind: str) -> dict[str, Any]:
    return {"name": name, "type": kind, "durable": True, "autoDelete": False, "vhost": "/"}


def _routing_key_channel(
    address: str, exchange: dict[str, Any], messages: list[str], description: str, **extra: Any
) -> dict[str, Any]:
    return {
        "address": address,
        "description": description,
        "messages": {name: _ref("messages", name) for name in messages},
        "bindings": {"amqp": {"is": "routingKey", "exchange": exchange, "bindingVersion": BINDING_VERSION}},
        **extra,
    }


def _queue_channel(address: str, messages: list[str], description: str, **extra: Any) -> dict[str, Any]:
    queue = {"name": address, "durable": True, "exclusive": False, "autoDelete": False, "vhost": "/"}
    return {
        "address": address,
        "description": description,
        "messages": {name: _ref("messages", name) for name in messages},
        "bindings": {"amqp": {"is": "queue", "queue": queue, "bindingVersion": BINDING_VERSION}},
        **extra,
    }


def _parameter(description: str, pattern: str | None = None) -> dict[str, Any]:
    text = description if pattern is None else f"{description} (matching {pattern})"
    return {"description": text}


def _channels() -> dict[str, Any]:
    topic_exchange = _exchange(EXCHANGE, "topic")
    default_exchange = {"name": "", "type": "direct", "durable": True, "autoDelete": False, "vhost": "/"}
    return {
        "tasks": _routing_key_channel(
            "task.{topic}",
            topic_exchange,
            ["task"],
            "A task for whichever agent subscribes to its topic (AMQP topic routing on the task's topic).",
            parameters={"topic": _parameter("the task's topic, dot-separated words", TOPIC_RE.pattern)},
        ),
        "agentTasks": _routing_key_channel(
            "agent.{name}",
            topic_exchange,
            ["task"],
            "A task addressed to one agent by name (the task's `agent` field).",
            parameters={"name": _parameter("the agent's name", NAME_RE.pattern)},
        ),
        "agentQueue": _queue_channel(
            "relaybus.agent.{name}",
            ["task"],
            "The durable quorum queue of agent {name}, bound to task.<pattern> for each of its topic "
            "patterns and to agent.<name>; every process hosting the agent consumes it "
            "(competing consumers).",
            parameters={"name": _parameter("the agent's name", NAME_RE.pattern)},
            **{"x-queue-arguments": AGENT_QUEUE_ARGUMENTS},
        ),
        "replies": _routing_key_channel(
            "{reply_to}",
            default_exchange,
            ["result", "taskEvent"],
            "Results, sent through the default exchange to the task's reply_to: a queue named "
            f"{REPLY_QUEUE_PREFIX}<name> or RabbitMQ's direct reply-to ({DIRECT_REPLY_TO}); a worker "
            "publishes results to nothing else. Also the events of a streamed task that names no events "
            f"queue ({EVENTS_TO_HEADER}).",
            parameters={"reply_to": _parameter("the task's AMQP reply_to property")},
        ),
        "taskEvents": _routing_key_channel(
            "{events_to}",
            default_exchange,
            ["taskEvent"],
            "The events of a streamed task, sent through the default exchange to the caller's events queue "
            f"named by the task's {EVENTS_TO_HEADER} header: {EVENTS_QUEUE_PREFIX}<32 hex digits>, a "
            "classic, non-durable queue exclusive to the caller's connection (events are best effort: no "
            "replicated write per event, nothing left behind by a caller that is gone).",
            parameters={
                "events_to": _parameter(f"the task's {EVENTS_TO_HEADER} header", EVENTS_QUEUE_RE.pattern)
            },
        ),
        "events": _routing_key_channel(
            "event.{topic}",
            topic_exchange,
            ["event"],
            "Application events (fire-and-forget, not mandatory): any JSON value.",
            parameters={"topic": _parameter("the event's topic, dot-separated words", TOPIC_RE.pattern)},
        ),
        "cancels": _routing_key_channel(
            CANCEL_ROUTING_KEY, topic_exchange, ["cancel"], "Asks every worker to stop a running task."
        ),
        "heartbeats": _routing_key_channel(
            HEARTBEAT_ROUTING_KEY, topic_exchange, ["heartbeat"], "A live worker says what it hosts."
        ),
        "stopped": _routing_key_channel(
            STOPPED_ROUTING_KEY, topic_exchange, ["heartbeat"], "A worker's last heartbeat, at exit."
        ),
        "pings": _routing_key_channel(
            PING_ROUTING_KEY,
            topic_exchange,
            ["ping"],
            "Anything published here asks every live worker for a heartbeat now.",
        ),
        "deadLetters": _routing_key_channel(
            "",
            _exchange(DEAD_LETTER_EXCHANGE, "fanout"),
            ["deadLetter"],
            f"Refused and poison messages, fanned out to the durable quorum queue {DEAD_LETTER_QUEUE}.",
        ),
    }


def _op(action: str, channel: str, summary: str, **extra: Any) -> dict[str, Any]:
    return {"action": action, "channel": _ref("channels", channel), "summary": summary, **extra}


def _publish(*, mandatory: bool, persistent: bool = True, **fields: Any) -> dict[str, Any]:
    binding = {"deliveryMode": 2 if persistent else 1, "mandatory": mandatory, **fields}
    return {"amqp": {**binding, "bindingVersion": BINDING_VERSION}}


def _operations() -> dict[str, Any]:
    reply = {
        "address": {"location": "$message.header#/reply_to", "description": "the task's reply_to property"},
        "channel": _ref("channels", "replies"),
    }
    consume = {"amqp": {"ack": True, "bindingVersion": BINDING_VERSION}}
    return {
        "sendTask": _op(
            "send",
            "tasks",
            "Publish a task to a topic: confirmed and mandatory (no subscriber: a basic.return at once).",
            reply=reply,
            bindings=_publish(mandatory=True),
        ),
        "sendTaskToAgent": _op(
            "send",
            "agentTasks",
            "Publish a task to one agent.",
            reply=reply,
            bindings=_publish(mandatory=True),
        ),
        "receiveTask": _op(
            "receive",
            "agentQueue",
            "Consume an agent's tasks; ack only after the result is confirmed (at-least-once).",
            bindings=consume,
        ),
        "sendResult": _op(
            "send",
            "replies",
            "Publish a task's result (mandatory, except to a direct reply-to, which RabbitMQ never returns).",
            bindings=_publish(mandatory=True),
        ),
        "receiveResult": _op("receive", "replies", "Consume results on a reply queue.", bindings=consume),
        "sendTaskEvent": _op(
            "send",
            "taskEvents",
            f"A running task's event, to its {EVENTS_TO_HEADER} queue, else to its reply_to (not mandatory, "
            "not persistent, numbered by seq: best effort).",
            bindings=_publish(mandatory=False, persistent=False),
        ),
        "receiveTaskEvent": _op(
            "receive", "taskEvents", "Consume a caller's events queue.", bindings=consume
        ),
        "sendEvent": _op("send", "events", "Publish an event.", bindings=_publish(mandatory=False)),
        "receiveEvent": _op("receive", "events", "Consume events from a queue bound to event.<pattern>."),
        "sendCancel": _op(
            "send", "cancels", "Ask the workers to cancel a task.", bindings=_publish(mandatory=False)
        ),
        "receiveCancel": _op("receive", "cancels", "A worker's private queue bound to the cancel key."),
        "sendHeartbeat": _op(
            "send",
            "heartbeats",
            "A worker's heartbeat.",
            bindings=_publish(mandatory=False, persistent=False),
        ),
        "receiveHeartbeat": _op("receive", "heartbeats", "Watch the fleet (e.g. `relaybus agents`)."),
        "sendStopped": _op(
            "send",
            "stopped",
            "A worker's last heartbeat.",
            bindings=_publish(mandatory=False, persistent=False),
        ),
        "sendPing": _op(
            "send", "pings", "Ask for heartbeats now.", bindings=_publish(mandatory=False, persistent=False)
        ),
        "receiveDeadLetter": _op(
            "receive", "deadLetters", "Inspect or replay dead letters (`relaybus dlq`)."
        ),
    }


def _header(description: str, **schema: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **schema}


def _headers(*extra: str) -> dict[str, Any]:
    known: dict[str, dict[str, Any]] = {
        SCHEMA_HEADER: {
            "type": ["integer", "string"],
            "description": f"Wire format version MAJOR or MAJOR.MINOR; this relaybus sends {SCHEMA_VERSION} "
            f"(= {SCHEMA_VERSION}.{SCHEMA_MINOR}). Another major is refused; a newer minor's unknown fields "
            "are ignored, an equal or older minor's refused.",
            "pattern": r"^\s*\d+(\.\d+)?\s*$",
        },
        TRACEPARENT_HEADER: _header("W3C trace context (optional)."),
        "tracestate": _header("W3C trace state (optional)."),
        DEADLINE_HEADER: _header(
            "Absolute deadline, Unix epoch seconds as a decimal string (optional; capped at 7 days).",
            pattern=r"^[0-9]+(\.[0-9]+)?$",
        ),
        DELEGATION_HEADER: _header("Comma-separated agent names of the delegation chain, outermost first."),
        ERROR_HEADER: _header("Why the message was dead-lettered."),
        ORIGINAL_QUEUE_HEADER: _header("The queue the message was refused on."),
        ORIGINAL_ROUTING_KEY_HEADER: _header("The routing key it was published with."),
        ORIGINAL_EXCHANGE_HEADER: _header("The exchange it was published to."),
        DEAD_AT_HEADER: _header("When it was dead-lettered, Unix epoch seconds."),
        STREAM_HEADER: _header(
            f"`1`: the caller wants the task's events (TaskEvents to its {EVENTS_TO_HEADER} queue, else to "
            "its reply_to)."
        ),
        EVENTS_TO_HEADER: _header(
            f"On a streamed task: the caller's events queue, {EVENTS_QUEUE_PREFIX}<32 hex digits> (classic, "
            "not durable); a value of another form is ignored (the events go to reply_to).",
            pattern=EVENTS_QUEUE_RE.pattern,
        ),
        EVENT_HEADER: _header(
            "On a TaskEvent: its kind; a reply queue's consumer tells events from results by it."
        ),
        SIGNATURE_HEADER: _header(
            "`v1=<hex>`: HMAC-SHA256 with a key shared by callers and workers (optional; a verifying side "
            "refuses a message without it)."
        ),
    }
    names = (SCHEMA_HEADER, *extra)
    required = [SCHEMA_HEADER] if ERROR_HEADER not in extra else [SCHEMA_HEADER, ERROR_HEADER]
    return {"type": "object", "required": required, "properties": {name: known[name] for name in names}}


def _prop(description: str, *, required: bool = False, **fields: Any) -> dict[str, Any]:
    return {"required": required, "description": description, **fields}


_CONTENT_TYPE = _prop(
    "application/json, optionally with charset=utf-8; absent is taken as JSON; anything else is refused.",
    value=_JSON,
)


def _message(name: str, title: str, payload: dict[str, Any], headers: dict[str, Any], **extra: Any) -> Any:
    return {
        "name": name,
        "title": title,
        "contentType": _JSON,
        "headers": headers,
        "payload": payload,
        "bindings": {"amqp": {"messageType": name, "bindingVersion": BINDING_VERSION}},
        **extra,
    }


def _messages() -> dict[str, Any]:
    task_headers = _headers(
        TRACEPARENT_HEADER,
        "tracestate",
        DEADLINE_HEADER,
        DELEGATION_HEADER,
        STREAM_HEADER,
        EVENTS_TO_HEADER,
        SIGNATURE_HEADER,
    )
    correlation = {"location": "$message.header#/correlation_id", "description": "the AMQP correlation_id"}
    return {
        "task": _message(
            "AgentTask",
            "A task",
            _ref("schemas", "AgentTask"),
            task_headers,
            summary=f"At most {DEFAULT_MAX_BODY_BYTES} bytes. Refused on receipt (dead-lettered, and "
            "answered REJECTED InvalidTask when its id and reply_to can be read) when invalid.",
            correlationId=correlation,
            **{
                "x-amqp-properties": {
                    "message_id": _prop("The task's id (a UUID), equal to the body's id.", required=True),
                    "reply_to": _prop(
                        "Where the result goes: relaybus.reply.<name> or amq.rabbitmq.reply-to."
                    ),
                    "correlation_id": _prop("Echoed in the result; relaybus sends the task id."),
                    "content_type": _CONTENT_TYPE,
                    "delivery_mode": _prop("2 (persistent).", value=2),
                    "priority": _prop("0-9, the task's priority (honoured where the queue supports it)."),
                }
            },
        ),
        "result": _message(
            "ExecutionResult",
            "A task's result",
            _ref("schemas", "ExecutionResult"),
            _headers(TRACEPARENT_HEADER, "tracestate", SIGNATURE_HEADER),
            summary="Refused by the caller (dead-lettered) when invalid; the task then ends FAILURE "
            "InvalidResult.",
            correlationId=correlation,
            **{
                "x-amqp-properties": {
                    "correlation_id": _prop("The task's correlation_id, else its id.", required=True),
                    "message_id": _prop("result-<task id>."),
                    "content_type": _CONTENT_TYPE,
                    "delivery_mode": _prop("2 (persistent).", value=2),
                }
            },
        ),
        "event": _message("Event", "An application event", {}, _headers(TRACEPARENT_HEADER, "tracestate")),
        "taskEvent": _message(
            "TaskEvent",
            "A running task's event, to its caller",
            _ref("schemas", "TaskEvent"),
            _headers(EVENT_HEADER, TRACEPARENT_HEADER, "tracestate", SIGNATURE_HEADER),
            summary="Sent to the task's reply_to with correlation_id = task id, only when the task asked "
            "(relaybus-stream: 1); not persistent, not mandatory, best effort, numbered by seq.",
            correlationId={"location": "$message.header#/correlation_id", "description": "the task's id"},
        ),
        "cancel": _message(
            "CancelRequest",
            "A cancel request",
            _ref("schemas", "CancelRequest"),
            _headers(TRACEPARENT_HEADER, "tracestate"),
            summary=f"At most {CONTROL_MAX_BODY_BYTES} bytes.",
        ),
        "heartbeat": _message(
            "WorkerHeartbeat",
            "A worker's heartbeat",
            _ref("schemas", "WorkerHeartbeat"),
            _headers(),
            summary=f"At most {CONTROL_MAX_BODY_BYTES} bytes; not persistent.",
        ),
        "ping": _message("Ping", "A heartbeat request", {"type": "object"}, _headers(), summary="Body {}."),
        "deadLetter": _message(
            "DeadLetter",
            "A dead letter",
            {"description": "The refused message's body, unchanged (it may be any bytes)."},
            _headers(
                ERROR_HEADER,
                ORIGINAL_QUEUE_HEADER,
                ORIGINAL_ROUTING_KEY_HEADER,
                ORIGINAL_EXCHANGE_HEADER,
                DEAD_AT_HEADER,
            ),
            summary="The original message with its properties and headers, plus the reason and where it "
            "came from.",
        ),
    }


def asyncapi_document() -> dict[str, Any]:
    """The whole AsyncAPI 3.0.0 document, as plain JSON-ready data (keys in a stable order)."""
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "relaybus wire contract",
            "version": f"{SCHEMA_VERSION}.{SCHEMA_MINOR}.0",
            "description": "Tasks, results, events, cancels, heartbeats and dead letters of relaybus on "
            "RabbitMQ (AMQP 0.9.1). Bodies are UTF-8 JSON. The prose, the refusal rules and a worked example "
            "are in docs/wire.md.",
        },
        "defaultContentType": _JSON,
        "servers": {
            "broker": {
                "host": "localhost:5672",
                "protocol": "amqp",
                "protocolVersion": "0.9.1",
                "description": "Any RabbitMQ 3.10 or later (quorum queues, at-least-once dead-lettering).",
            }
        },
        "channels": _channels(),
        "operations": _operations(),
        "components": {
            "messages": _messages(),
            "schemas": model_schemas(ref_template="#/components/schemas/{model}"),
        },
    }
