"""``ToolSpec``: what a model is told about one tool (its name, description and JSON schema)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from relaybus.exceptions import ConfigError

__all__ = ["TOOL_NAME_RE", "DescribedBySpec", "ToolSpec"]

TOOL_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""Tool names both OpenAI and Anthropic accept: 1-64 letters, digits, ``_`` or ``-``."""


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """One tool as a provider sends it to the model.

    ``parameters`` is the JSON Schema of the arguments object (``{"type": "object", "properties": ...}``).
    A provider turns it into its own format (OpenAI ``tools[].function``, Anthropic ``tools[].input_schema``).
    """

    name: str
    description: str
    parameters: Mapping[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not TOOL_NAME_RE.match(self.name):
            raise ConfigError(
                f"tool name {self.name!r} is not 1-64 letters, digits, '_' or '-' (what OpenAI and Anthropic "
                "accept); rename the function or pass name=..."
            )
        if not isinstance(self.parameters, Mapping) or self.parameters.get("type") != "object":
            raise ConfigError(f'tool {self.name!r}: parameters must be a JSON Schema with "type": "object"')


class DescribedBySpec:
    """Base of every kind of tool: ``name`` and ``description`` are those of its ``spec``."""

    spec: ToolSpec

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def description(self) -> str:
        return self.spec.description
