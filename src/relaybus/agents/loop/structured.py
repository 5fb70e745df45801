"""Structured output: an agent's ``output_schema`` as a response schema, and the check of the final answer.

The schema sent is the model's JSON schema made strict where OpenAI's strict mode allows it (every object
closed with ``additionalProperties: false`` and every property listed in ``required``; a field with a
default must then be sent, which validation accepts). A schema strict mode cannot express (a free-form
mapping, ``dict[str, int]``) is sent with ``strict: false``. Validation is the model class's own.
"""

from __future__ import annotations

import functools
import inspect
import re
from typing import Any

from pydantic import BaseModel, ValidationError

from relaybus.executor.llm.chat import ResponseSchema
from relaybus.tools.schema import format_validation_error, json_schema_of

__all__ = ["StructuredOutput", "structured_output"]

_FENCED = re.compile(r"^```[A-Za-z]*\s*\n(.*)\n```$", re.DOTALL)


class StructuredOutput:
    """What the loop needs for one output schema: the :class:`ResponseSchema` to send and :meth:`parse`."""

    def __init__(self, model: type[BaseModel]) -> None:
        self.model = model
        schema = json_schema_of(model)
        strict = _make_strict(schema)
        name = re.sub(r"[^A-Za-z0-9_-]", "_", model.__name__)[:64] or "answer"
        doc = inspect.getdoc(model) if model.__doc__ else ""
        description = (doc or "").split("\n\n", 1)[0].replace("\n", " ")
        self.response_schema = ResponseSchema(name, schema, description=description, strict=strict)

    def parse(self, text: str) -> BaseModel | str:
        """The answer as an instance of the model, or the reasons it is not one (for the repair turn)."""
        stripped = text.strip()
        fenced = _FENCED.match(stripped)  # models that are not forced into JSON like to wrap it in a fence
        if fenced:
            stripped = fenced.group(1).strip()
        try:
            return self.model.model_validate_json(stripped)
        except ValidationError as exc:
            return format_validation_error(exc)

    def repair_prompt(self, reasons: str) -> str:
        """The user message of the repair turn."""
        return (
            f"Your answer is not a valid {self.response_schema.name} object: {reasons}. Answer again with "
            "only the JSON object, matching the schema you were given."
        )


@functools.lru_cache(maxsize=256)
def structured_output(model: type[BaseModel]) -> StructuredOutput:
    """The :class:`StructuredOutput` of ``model``, built once per class (schema generation takes ~1 ms)."""
    return StructuredOutput(model)


def _make_strict(schema: dict[str, Any]) -> bool:
    """Close every object of ``schema`` in place; whether strict mode can take the result."""
    strict = True
    for node in _objects(schema):
        properties = node.get("properties")
        extra = node.get("additionalProperties", False)
        if extra is not False:
            strict = False  # a mapping with free keys: strict mode cannot express it, leave it open
            continue
        node["additionalProperties"] = False
        if isinstance(properties, dict):
            node["required"] = list(properties)
            for value in properties.values():  # strict mode refuses defaults; validation fills them in
                if isinstance(value, dict):
                    value.pop("default", None)
    return strict


def _objects(node: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if node.get("type") == "object":
            found.append(node)
        for value in node.values():
            found.extend(_objects(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_objects(value))
    return found
