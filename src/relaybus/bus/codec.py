"""Wire format: tasks and results as UTF-8 JSON, checked on receipt before any handler sees them.

A body is refused (``InvalidMessage`` with a reason fit for the ``relaybus-error`` header) when it is over the
size limit, looks like pickle, is not UTF-8, is not JSON, carries no or an unknown ``relaybus-schema``
version, or does not validate against the model. Nothing is ever unpickled.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from relaybus.exceptions import InvalidMessage
from relaybus.messages import SCHEMA_VERSION, AgentTask, ExecutionResult

from .base import (
    DEFAULT_EXCHANGE,
    EXCHANGE,
    SCHEMA_HEADER,
    Delivery,
    HeaderValue,
    OutgoingMessage,
)

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "decode",
    "decode_delivery",
    "encode_result",
    "encode_task",
]

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
_MAX_REASON = 500
M = TypeVar("M", bound=BaseModel)

# Pickle protocol 2+ starts with PROTO (0x80); protocols 0-1 start with an opcode such as '(' or ']' and
# end with STOP ('.'). JSON can't end in '.', so both are told apart without ever loading them.
_PICKLE_START = b"\x80"


def encode_task(
    task: AgentTask,
    *,
    reply_to: str | None,
    headers: Mapping[str, HeaderValue] | None = None,
    mandatory: bool = True,
) -> OutgoingMessage:
    """The message that carries ``task`` to its topic (or to the one agent it addresses)."""
    all_headers: dict[str, HeaderValue] = {SCHEMA_HEADER: SCHEMA_VERSION}
    if headers:
        all_headers.update(headers)
    return OutgoingMessage(
        body=task.model_dump_json().encode(),
        routing_key=task.routing_key,
        exchange=EXCHANGE,
        message_id=str(task.id),
        correlation_id=str(task.id),
        reply_to=reply_to,
        headers=all_headers,
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
        headers={SCHEMA_HEADER: SCHEMA_VERSION},
        mandatory=True,
    )


def _short(reason: str) -> str:
    return reason if len(reason) <= _MAX_REASON else reason[: _MAX_REASON - 3] + "..."


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
    if content_type not in (None, "", "application/json"):
        raise InvalidMessage(f"content_type {content_type!r} is not application/json")
    version = headers.get(SCHEMA_HEADER)
    if version is None:
        raise InvalidMessage(f"missing header {SCHEMA_HEADER!r}; set it to {SCHEMA_VERSION}")
    if isinstance(version, bytes):
        version = version.decode("utf-8", "replace")
    if str(version).strip() != str(SCHEMA_VERSION):
        raise InvalidMessage(
            f"unknown schema version {str(version)[:20]!r} in {SCHEMA_HEADER!r}; "
            f"this relaybus speaks {SCHEMA_VERSION}"
        )
    try:
        return model.model_validate_json(body)  # refuses invalid UTF-8 itself
    except (ValueError, RecursionError) as exc:  # ValidationError, or e.g. nesting too deep for the parser
        # UTF-8 is checked only now, to word the reason: decoding every body first cost a copy per message.
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as bad:
            raise InvalidMessage(f"body is not UTF-8: invalid byte at offset {bad.start}") from None
        if isinstance(exc, ValidationError):
            raise InvalidMessage(_short(_validation_reason(model, exc))) from None
        raise InvalidMessage(_short(f"body is not valid JSON: {exc}")) from None


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
