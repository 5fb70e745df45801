"""The Markdown tables of docs/wire.md, generated from the code so that the prose cannot drift from it.

docs/wire.md holds each table between ``<!-- table: NAME -->`` and ``<!-- end -->``; a test renders
:func:`tables` and compares. The fields' meanings live here (``FIELD_NOTES``): a model field without one fails
that test, so a new field cannot reach the wire undocumented.
"""

from __future__ import annotations

import json
import re
from typing import Any

from relaybus.bus.base import DEAD_LETTER_EXCHANGE, DEAD_LETTER_QUEUE, EXCHANGE

from .asyncapi import AGENT_QUEUE_ARGUMENTS, asyncapi_document
from .schemas import model_schemas

__all__ = ["FIELD_NOTES", "replace_tables", "tables"]

FIELD_NOTES: dict[str, dict[str, str]] = {
    "AgentTask": {
        "id": "UUID; also the AMQP message_id and the idempotency key (a task delivered twice runs once).",
        "topic": "Dot-separated words; routed as `task.<topic>`.",
        "prompt": "The text for the agent.",
        "input": "Any JSON object; a dependent task gets `input.dependencies` (dependency id -> output).",
        "agent": "Address one agent by name (routed as `agent.<name>` instead of by topic).",
        "mode": "`llm`, `api`, `script` or a registered custom mode.",
        "depends_on": "Task ids this task waits for (in a plan).",
        "timeout_s": "Seconds the task may run, counted from receipt when no deadline header is sent.",
        "priority": "0-9; honoured where the queue supports priorities (RabbitMQ 4.0+ quorum queues).",
        "metadata": "String to string, carried untouched.",
        "created_at": "ISO 8601 with a time zone.",
    },
    "ExecutionResult": {
        "task_id": "The task this answers.",
        "status": "`success`, `failure`, `timeout`, `cancelled` or `rejected`.",
        "output": "Any JSON value (the agent's answer).",
        "error": "Set unless the task succeeded: `type`, `message`, `retryable`.",
        "agent": "The agent that answered.",
        "worker": "The process that ran it (`host:pid`).",
        "started_at": "ISO 8601 with a time zone.",
        "finished_at": "ISO 8601 with a time zone.",
        "attempts": "How many runs it took.",
        "usage": "`prompt_tokens`, `completion_tokens`, `requests`.",
    },
    "ErrorInfo": {
        "type": "The error's type name, e.g. `InvalidTask`, `InvalidResult`, `ReplyTimeout`.",
        "message": "For people: what went wrong and how to fix it.",
        "retryable": "Whether sending the task again could help.",
    },
    "Usage": {
        "prompt_tokens": "Model input tokens, summed over every turn and delegated task.",
        "completion_tokens": "Model output tokens, likewise.",
        "requests": "Model requests made.",
    },
    "TaskEvent": {
        "task_id": "The task the event belongs to (also the AMQP correlation_id).",
        "seq": "1, 2, ... per task, in the order sent; a gap shows a lost event (events are best effort).",
        "kind": "`delta` (model text), `progress` (a line from the agent), `tool_call` / `tool_result` (the "
        "agent loop's steps), `result` (the last; carries the result).",
        "text": "The text of a delta or a progress line.",
        "data": "Structured detail (a tool call's name and arguments, a tool's result).",
        "sub_task_id": "Set on an event forwarded from a delegated task: that task's id.",
        "agent": "The agent that sent it.",
        "result": "On the `result` event: the task's ExecutionResult (the result message is authoritative).",
    },
    "CancelRequest": {
        "task_id": "The task to stop.",
        "reason": "Why, as the CANCELLED result will say.",
    },
    "WorkerHeartbeat": {
        "worker": "`host:pid` of the worker.",
        "host": "Its host name.",
        "pid": "Its process id.",
        "agents": "The agent names it hosts.",
        "in_flight": "Tasks it holds now.",
        "capacity": "Tasks it runs at once at most.",
        "processed": "Tasks it finished so far.",
        "status": "`running`, `draining` or `stopped`.",
        "interval_s": "Seconds between its heartbeats.",
        "timestamp": "ISO 8601 with a time zone.",
        "broker": "`host:port` of the RabbitMQ node it is connected to (left out when unknown).",
        "llm": "`provider/model` its agents' default executor calls (left out when unknown).",
        "running": "Ids of the tasks it runs now (at most 50).",
    },
}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _type(prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        return str(prop["$ref"]).rsplit("/", 1)[-1]
    if "anyOf" in prop:
        return " or ".join(_type(option) for option in prop["anyOf"])
    kind = prop.get("type", "any JSON")
    if "format" in prop:
        kind = f"{kind} ({prop['format']})"
    if kind == "array" and "items" in prop:
        kind = f"array of {_type(prop['items'])}"
    return str(kind)


def _limits(prop: dict[str, Any]) -> str:
    names = ("minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum", "pattern", "enum", "default")
    found = {name: prop[name] for name in names if name in prop}
    for option in prop.get("anyOf", []):
        found.update({name: option[name] for name in names if name in option})
    return ", ".join(f"{name} `{json.dumps(value)}`" for name, value in found.items())


def _fields(name: str, schema: dict[str, Any]) -> str:
    notes = FIELD_NOTES[name]
    required = set(schema.get("required", []))
    rows = ["| field | type | required | limits | meaning |", "|---|---|---|---|---|"]
    for field, prop in schema.get("properties", {}).items():
        yes = "**yes**" if field in required else "no"
        rows.append(
            f"| `{field}` | {_cell(_type(prop))} | {yes} | {_cell(_limits(prop))} | {_cell(notes[field])} |"
        )
    return "\n".join(rows)


def _topology() -> str:
    rows = ["| name | kind | arguments | what for |", "|---|---|---|---|"]
    args = ", ".join(f"`{k}={v}`" for k, v in AGENT_QUEUE_ARGUMENTS.items())
    rows += [
        f"| `{EXCHANGE}` | exchange, topic, durable | | tasks (`task.<topic>`, `agent.<name>`) and events |",
        f"| `{DEAD_LETTER_EXCHANGE}` | exchange, fanout, durable | | dead letters |",
        f"| `{DEAD_LETTER_QUEUE}` | queue, durable | `x-queue-type=quorum` "
        f"| bound to `{DEAD_LETTER_EXCHANGE}` |",
        f"| `relaybus.agent.<name>` | queue, durable | {args} | an agent's tasks (competing consumers) |",
    ]
    return "\n".join(rows)


def _channels() -> str:
    rows = ["| routing key or queue | exchange | messages | what for |", "|---|---|---|---|"]
    for channel in asyncapi_document()["channels"].values():
        amqp = channel["bindings"]["amqp"]
        exchange = (
            amqp.get("exchange", {}).get("name", "(queue)") if amqp["is"] == "routingKey" else "(queue)"
        )
        messages = ", ".join(ref["$ref"].rsplit("/", 1)[-1] for ref in channel["messages"].values())
        address = channel["address"] or "(any)"
        rows.append(
            f"| `{address}` | `{exchange or '(default)'}` | {messages} | {_cell(channel['description'])} |"
        )
    return "\n".join(rows)


def _headers() -> str:
    rows = ["| header | on | meaning |", "|---|---|---|"]
    seen: dict[str, tuple[list[str], str, bool]] = {}
    for key, message in asyncapi_document()["components"]["messages"].items():
        required = set(message["headers"]["required"])
        for header, schema in message["headers"]["properties"].items():
            on, _text, _ = seen.setdefault(header, ([], schema["description"], header in required))
            on.append(f"{key}{' (required)' if header in required else ''}")
    rows += [f"| `{header}` | {', '.join(on)} | {_cell(text)} |" for header, (on, text, _) in seen.items()]
    return "\n".join(rows)


def _properties(message: str) -> str:
    props = asyncapi_document()["components"]["messages"][message]["x-amqp-properties"]
    rows = ["| property | required | meaning |", "|---|---|---|"]
    for name, prop in props.items():
        rows.append(
            f"| `{name}` | {'**yes**' if prop['required'] else 'no'} | {_cell(prop['description'])} |"
        )
    return "\n".join(rows)


def tables() -> dict[str, str]:
    """Every generated table of docs/wire.md, by name."""
    found = {"topology": _topology(), "channels": _channels(), "headers": _headers()}
    found["task-properties"] = _properties("task")
    found["result-properties"] = _properties("result")
    for name, schema in model_schemas().items():
        if name in FIELD_NOTES:
            found[f"fields-{name}"] = _fields(name, schema)
    return found


_BLOCK = re.compile(r"(<!-- table: (?P<name>[\w-]+) -->\n)(?:(?!<!-- ).*\n)*(<!-- end -->)")


def replace_tables(text: str) -> str:
    """``text`` (docs/wire.md) with each generated table block filled in from the code."""
    rendered = tables()
    return _BLOCK.sub(lambda m: m[1] + rendered[m["name"]] + "\n" + m[3], text)
