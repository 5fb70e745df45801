"""``ToolOutcome``: what one tool call gives back to the model, and the rules every tool follows to make one.

Every kind of tool (a Python function, another agent, an MCP server's tool) parses the model's arguments,
renders its result and caps its size the same way, here: the agent loop gets a ``ToolOutcome`` from every
call and never an exception for a fault of the tool.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter
from pydantic_core import PydanticSerializationError

from relaybus.exceptions import ConfigError
from relaybus.messages import Usage

__all__ = [
    "DEFAULT_MAX_OUTPUT_BYTES",
    "DEFAULT_TIMEOUT_S",
    "MIN_MAX_OUTPUT_BYTES",
    "Arguments",
    "ToolOutcome",
]

DEFAULT_MAX_OUTPUT_BYTES = 16 * 1024
"""Default cap of the text one tool call sends back to the model, in UTF-8 bytes (the note included)."""

MIN_MAX_OUTPUT_BYTES = 256
"""The smallest cap accepted: room for the truncation note and some of the output."""

DEFAULT_TIMEOUT_S = 60.0
"""How long a Python or MCP tool call may take unless the tool says otherwise."""

Arguments = str | bytes | Mapping[str, Any] | None
"""A tool call's arguments: the model's raw JSON text, or an already parsed mapping (None or "" mean {})."""

_ANY: TypeAdapter[Any] = TypeAdapter(Any)


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """The result of one tool call, ready to go back to the model as a tool result.

    ``content`` is the text for the model: the tool's output (a string as it is, any other value as JSON) or,
    when ``is_error``, a short message saying what went wrong. It is at most the tool's cap in UTF-8 bytes;
    ``truncated`` says the output was cut, and the text then ends with a note stating the cap. ``usage`` is
    the token usage the call caused (non-zero only for a delegated agent).
    """

    content: str
    is_error: bool = False
    usage: Usage = field(default_factory=Usage)
    truncated: bool = False

    @classmethod
    def error(
        cls, message: str, *, max_bytes: int = DEFAULT_MAX_OUTPUT_BYTES, usage: Usage | None = None
    ) -> ToolOutcome:
        """An error outcome carrying ``message`` (capped like any output)."""
        text, truncated = cap_text(message, max_bytes)
        return cls(text, is_error=True, usage=usage or Usage(), truncated=truncated)

    @classmethod
    def from_value(
        cls, value: Any, *, max_bytes: int = DEFAULT_MAX_OUTPUT_BYTES, usage: Usage | None = None
    ) -> ToolOutcome:
        """A success outcome for a tool's return value: a string as it is, anything else as JSON (pydantic
        models, dataclasses, dates, UUIDs, ... through pydantic); a value that cannot be serialised gives an
        error outcome naming its type."""
        if isinstance(value, str):
            text = value
        else:
            try:
                text = _ANY.dump_json(value).decode()
            except (PydanticSerializationError, ValueError, TypeError) as exc:
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                return cls.error(
                    f"the tool returned a {type(value).__name__}, which cannot be sent as JSON: {reason}",
                    max_bytes=max_bytes,
                    usage=usage,
                )
        capped, truncated = cap_text(text, max_bytes)
        return cls(capped, usage=usage or Usage(), truncated=truncated)


def parse_arguments(arguments: Arguments) -> dict[str, Any] | str:
    """The arguments as a dict, or a message saying why they are not a JSON object."""
    if arguments is None:
        return {}
    if isinstance(arguments, Mapping):
        return dict(arguments)
    if isinstance(arguments, bytes | bytearray):
        try:
            arguments = bytes(arguments).decode()
        except UnicodeDecodeError:
            return "the arguments are not UTF-8 text"
    if not arguments.strip():
        return {}
    try:
        parsed = json.loads(arguments)
    except ValueError as exc:
        return f"the arguments are not valid JSON ({exc}); send a JSON object"
    if not isinstance(parsed, dict):
        return f"the arguments must be a JSON object, not {type(parsed).__name__}"
    return parsed


def cap_text(text: str, max_bytes: int) -> tuple[str, bool]:
    """``text`` cut to at most ``max_bytes`` UTF-8 bytes, with a note stating the cap; and whether it was."""
    data = text.encode()
    if len(data) <= max_bytes:
        return text, False
    note = f"\n[truncated: the output was {len(data)} bytes; tool results are capped at {max_bytes} bytes]"
    keep = max(0, max_bytes - len(note.encode()))
    return data[:keep].decode(errors="ignore") + note, True


def check_max_output_bytes(owner: str, value: int) -> int:
    """``value`` if it is a usable output cap, else a ConfigError naming ``owner``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < MIN_MAX_OUTPUT_BYTES:
        raise ConfigError(
            f"{owner}: max_output_bytes must be an integer of at least {MIN_MAX_OUTPUT_BYTES}, got {value!r}"
        )
    return value


def check_timeout(owner: str, value: float) -> float:
    """``value`` if it is a usable timeout in seconds, else a ConfigError naming ``owner``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(f"{owner}: timeout_s must be a positive number of seconds, got {value!r}")
    return float(value)
