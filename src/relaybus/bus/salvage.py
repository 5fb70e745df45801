"""What can still be read from a refused message: the task id it concerns, so its sender can be told at once.

A task or a result refused on receipt (see :mod:`relaybus.bus.codec`) is dead-lettered; when the id of the
task it concerns can be read anyway, the worker answers the task REJECTED and the caller ends its task as
FAILURE ``InvalidResult``, instead of leaving the other side waiting for its whole timeout. The id is read
from the body's JSON field (only when the body is within the size limit and is a JSON object), else from the
AMQP ``message_id`` or ``correlation_id`` when they are UUIDs. Nothing is trusted beyond that id.
"""

from __future__ import annotations

import json
from uuid import UUID

__all__ = ["readable_id"]


def readable_id(
    body: bytes, field: str, *properties: str | None, max_bytes: int, prefix: str = ""
) -> UUID | None:
    """The UUID in ``body``'s ``field``, else the first of ``properties`` that is a UUID (after removing
    ``prefix``, e.g. ``result-`` of a result's message_id), else None."""
    if len(body) <= max_bytes:
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            data = None
        if isinstance(data, dict) and isinstance(value := data.get(field), str):
            found = _uuid(value)
            if found is not None:
                return found
    for value in properties:
        if value:
            found = _uuid(value.removeprefix(prefix))
            if found is not None:
                return found
    return None


def _uuid(value: str) -> UUID | None:
    if len(value) > 64:
        return None
    try:
        return UUID(value)
    except ValueError:
        return None
