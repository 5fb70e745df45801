"""The JSON Schemas of every message body relaybus puts on the bus, generated from the pydantic models.

``relaybus schema json`` prints :func:`json_schemas`; the AsyncAPI document (:mod:`.asyncapi`) embeds the same
schemas under ``components.schemas``. What a reader requires is marked required (a task's ``id`` included),
with the topic and name patterns; ``additionalProperties: false`` is this version's strict reading (a newer
minor's extra fields are ignored instead: see :mod:`relaybus.bus.compat`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from relaybus.messages import (
    SCHEMA_MINOR,
    SCHEMA_VERSION,
    AgentTask,
    CancelRequest,
    ExecutionResult,
    TaskEvent,
    WorkerHeartbeat,
)

__all__ = ["MODELS", "json_schemas", "model_schemas"]

MODELS: tuple[type[BaseModel], ...] = (AgentTask, ExecutionResult, TaskEvent, CancelRequest, WorkerHeartbeat)
"""The message bodies with a schema of their own (an event's payload is any JSON value)."""
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def model_schemas(ref_template: str = "#/$defs/{model}") -> dict[str, Any]:
    """Each model's schema and those of the models it uses, by name, with references made by
    ``ref_template``."""
    _, top = models_json_schema([(model, "validation") for model in MODELS], ref_template=ref_template)
    definitions: dict[str, Any] = top["$defs"]
    return dict(sorted(definitions.items()))


def json_schemas() -> dict[str, Any]:
    """One JSON Schema document (draft 2020-12) holding every message's schema under ``$defs``."""
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": f"urn:relaybus:wire:{SCHEMA_VERSION}.{SCHEMA_MINOR}",
        "title": f"relaybus wire format {SCHEMA_VERSION}.{SCHEMA_MINOR}: message bodies",
        "description": (
            "UTF-8 JSON bodies with the AMQP header relaybus-schema (see docs/wire.md). Each message's "
            "schema is under $defs, by model name."
        ),
        "$defs": model_schemas(),
    }
