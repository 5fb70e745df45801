"""The compatibility rule of the wire format: which schema versions and content types a reader accepts.

Every message carries ``relaybus-schema: MAJOR`` or ``relaybus-schema: MAJOR.MINOR`` (``1`` is ``1.0``):

- **Another major** is refused: a major changes or removes what a field means, so no reader can guess.
- **The same major, an older or equal minor**: read strictly, a field this reader does not know is refused
  (a typo such as ``promt`` fails loudly instead of being lost).
- **The same major, a newer minor**: fields this reader does not know are *ignored*, the rest is validated
  as usual. A minor only ever *adds optional fields* (with a default that keeps the old behaviour), so an
  older reader loses nothing it could have used, and a newer reader fills what an older sender left out
  with the defaults. Workers and callers can so be upgraded one at a time across a minor release.

A sender writes the version it was built with: this relaybus writes ``1`` (:data:`SCHEMA_MINOR` is 0).
Whoever adds an optional field to a message raises :data:`SCHEMA_MINOR` (and sends ``1.<minor>``); whoever
changes a field's meaning or removes one raises ``SCHEMA_VERSION``.

``content_type`` is ``application/json`` (or absent), with an optional ``charset=utf-8`` parameter; any
other charset is refused, since bodies are UTF-8 JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from relaybus.exceptions import InvalidMessage
from relaybus.messages import SCHEMA_MINOR, SCHEMA_VERSION

from .base import SCHEMA_HEADER, HeaderValue

__all__ = [
    "check_content_type",
    "ignoring_unknown_fields",
    "schema_header_value",
    "schema_version",
]

M = TypeVar("M", bound=BaseModel)
_VERSION_RE = re.compile(r"^(\d{1,6})(?:\.(\d{1,6}))?$")
_JSON_TYPE = "application/json"
_UTF8 = ("utf-8", "utf8")


def schema_header_value(major: int = SCHEMA_VERSION, minor: int = SCHEMA_MINOR) -> HeaderValue:
    """What a sender of ``major.minor`` puts in ``relaybus-schema``: the bare major for minor 0 (what every
    relaybus since the first reads), ``"major.minor"`` otherwise."""
    return major if minor == 0 else f"{major}.{minor}"


def schema_version(headers: Mapping[str, HeaderValue]) -> tuple[int, int]:
    """The (major, minor) a message declares; raise :class:`InvalidMessage` when it is missing, malformed or
    of another major than this relaybus's."""
    raw = headers.get(SCHEMA_HEADER)
    if raw is None:
        raise InvalidMessage(f"missing header {SCHEMA_HEADER!r}; set it to {SCHEMA_VERSION}")
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    match = _VERSION_RE.match(text.strip())
    if match is None or int(match[1]) != SCHEMA_VERSION:
        raise InvalidMessage(
            f"unknown schema version {text[:20]!r} in {SCHEMA_HEADER!r}; "
            f"this relaybus speaks {SCHEMA_VERSION}"
        )
    return int(match[1]), int(match[2] or 0)


def check_content_type(content_type: str | None) -> None:
    """Raise :class:`InvalidMessage` unless ``content_type`` is absent, empty or ``application/json``
    (parameters allowed; a ``charset`` must be UTF-8)."""
    if not content_type:
        return
    media, _, params = content_type.partition(";")
    if media.strip().lower() != _JSON_TYPE:
        raise InvalidMessage(f"content_type {content_type[:100]!r} is not application/json")
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in _UTF8:
            raise InvalidMessage(
                f"content_type {content_type[:100]!r}: charset {value.strip()[:40]!r} is not supported; "
                "bodies are UTF-8 JSON: send 'application/json' or 'application/json; charset=utf-8'"
            )


def ignoring_unknown_fields(model: type[M], body: bytes, exc: ValidationError) -> M | None:
    """``body`` as ``model`` with the fields it does not know left out (a newer minor's additions), or None
    when anything else is wrong with it (then ``exc`` is the reason to give)."""
    errors = exc.errors(include_url=False, include_input=False)
    if not errors or any(err["type"] != "extra_forbidden" for err in errors):
        return None
    data: Any = json.loads(body)
    for err in errors:
        *parents, leaf = err["loc"]
        node = data
        for key in parents:
            node = node[key]
        del node[leaf]
    try:
        return model.model_validate(data)
    except ValidationError:
        return None
