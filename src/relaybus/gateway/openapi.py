"""The gateway's OpenAPI 3.1 document (``/openapi.json``), with schemas generated from the pydantic models,
and a plain server-rendered page that shows it (``/docs``: no script, nothing loaded from elsewhere)."""

from __future__ import annotations

import html
import json
from typing import Any

from pydantic.json_schema import models_json_schema

from relaybus import __version__
from relaybus.messages import AgentTask, ExecutionResult

from .rest import TaskView

__all__ = ["docs_page", "openapi_document"]

_PROBLEM = {
    "type": "object",
    "description": "RFC 9457 problem details; `detail` says what was wrong, `errors` lists failing fields.",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
    "required": ["title", "status", "detail"],
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(name)}}}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/problem+json": {"schema": _ref("Problem")}}}


_TASK_ID = {"name": "task_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
_NOT_FOUND = _problem("Unknown task, or its result has expired")


def _paths() -> dict[str, Any]:
    return {
        "/tasks": {
            "post": {
                "summary": "Publish a task; with ?wait=S wait up to S seconds for its result",
                "parameters": [
                    {"name": "wait", "in": "query", "required": False, "schema": {"type": "number"}}
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("AgentTask")}},
                },
                "responses": {
                    "200": _json("TaskView", "The task ended within ?wait; result is set"),
                    "202": _json("TaskView", "Accepted and running; GET its Location for the result"),
                    "400": _problem("The body is not JSON, or ?wait is not a number of seconds"),
                    "413": _problem("The body is over the size limit"),
                    "415": _problem("The body is not sent as application/json"),
                    "422": _problem("The body is not a valid AgentTask"),
                    "503": _problem("The gateway waits for its maximum of tasks; retry later"),
                },
            }
        },
        "/tasks/{task_id}": {
            "get": {
                "summary": "The task's phase, and its result once it finished",
                "parameters": [_TASK_ID],
                "responses": {"200": _json("TaskView", "The task"), "404": _NOT_FOUND},
            },
            "delete": {
                "summary": "Cancel the task; the worker running it is told to stop",
                "parameters": [_TASK_ID],
                "responses": {
                    "200": _json("TaskView", "Cancelled"),
                    "404": _NOT_FOUND,
                    "409": _problem("The task had already ended"),
                },
            },
        },
        "/tasks/{task_id}/events": {
            "get": {
                "summary": "Server-Sent Events: a `status` event per phase change, then one `result` event",
                "parameters": [_TASK_ID],
                "responses": {
                    "200": {"description": "An event stream", "content": {"text/event-stream": {}}},
                    "404": _NOT_FOUND,
                },
            }
        },
        "/a2a": {
            "post": {
                "summary": "A2A JSON-RPC (1.0 with A2A-Version: 1.0, else 0.3); name the agent in `tenant`",
                "responses": {"200": {"description": "A JSON-RPC response, or an event stream"}},
            }
        },
        "/agents/{agent}/a2a": {
            "post": {
                "summary": "A2A JSON-RPC for one agent",
                "parameters": [
                    {"name": "agent", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {"200": {"description": "A JSON-RPC response, or an event stream"}},
            }
        },
        "/.well-known/agent-card.json": {
            "get": {
                "summary": "The A2A agent card: every live agent as a skill",
                "security": [],
                "responses": {"200": {"description": "An A2A agent card"}},
            }
        },
        "/healthz": {
            "get": {
                "summary": "200 while connected to the broker, else 503",
                "security": [],
                "responses": {"200": {"description": "Healthy"}, "503": {"description": "No broker"}},
            }
        },
    }


def openapi_document(base_url: str, *, secured: bool) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the gateway at ``base_url``."""
    _, defs = models_json_schema(
        [(AgentTask, "validation"), (TaskView, "serialization"), (ExecutionResult, "serialization")],
        ref_template="#/components/schemas/{model}",
    )
    components: dict[str, Any] = {"schemas": {**defs.get("$defs", {}), "Problem": _PROBLEM}}
    # On the bus a task must carry its id; over HTTP the gateway makes one when the body has none.
    task_schema = components["schemas"]["AgentTask"]
    task_schema["required"] = [name for name in task_schema.get("required", []) if name != "id"]
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "relaybus gateway",
            "version": __version__,
            "description": "Tasks for agents on a relaybus message bus, over HTTP.",
        },
        "servers": [{"url": base_url}],
        "paths": _paths(),
        "components": components,
    }
    if secured:
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        document["security"] = [{"bearer": []}]
    return document


def docs_page(document: dict[str, Any]) -> str:
    """A self-contained HTML page listing the operations of ``document`` and showing it whole; every value
    from the document is escaped."""
    rows = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            rows.append(
                f"<tr><td><code>{html.escape(method.upper())}</code></td><td><code>{html.escape(path)}</code>"
                f"</td><td>{html.escape(operation.get('summary', ''))}</td></tr>"
            )
    title = html.escape(document["info"]["title"])
    return (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{title}</title>"
        "<style>body{font-family:sans-serif;margin:2em;max-width:70em}td{padding:.2em 1em .2em 0;"
        "vertical-align:top}pre{background:#f4f4f4;padding:1em;overflow:auto}</style></head><body>"
        f"<h1>{title} {html.escape(document['info']['version'])}</h1>"
        f"<p>{html.escape(document['info']['description'])} The document: <a href='/openapi.json'>"
        "/openapi.json</a>.</p>"
        "<table><tr><th>Method</th><th>Path</th><th>What it does</th></tr>" + "".join(rows) + "</table>"
        f"<h2>OpenAPI document</h2><pre>{html.escape(json.dumps(document, indent=2))}</pre></body></html>\n"
    )
