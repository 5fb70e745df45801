"""Conversions between records and stored column values: Unix seconds and JSON text.

Times are stored as Unix seconds (``DOUBLE PRECISION``) and JSON as text in both stores, so that one SQL
text serves both and a corrupt value can be detected and skipped rather than refused by the database.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any, overload
from uuid import UUID

from pydantic import JsonValue, ValidationError

from relaybus.exceptions import ConfigError
from relaybus.log import get_logger
from relaybus.messages import ExecutionResult

__all__ = [
    "check_lease",
    "dump_json",
    "epoch",
    "from_epoch",
    "is_invalid",
    "load_json",
    "load_result",
    "now_epoch",
    "seconds",
]

_log = get_logger("relaybus.state")
_INVALID = object()


def now_epoch() -> float:
    return time.time()


def epoch(at: datetime | None) -> float:
    """``at`` (timezone-aware) as Unix seconds; None means now."""
    if at is None:
        return now_epoch()
    if at.tzinfo is None:
        raise ConfigError(f"times given to a state store must be timezone-aware (got {at.isoformat()})")
    return at.timestamp()


@overload
def from_epoch(value: float) -> datetime: ...
@overload
def from_epoch(value: float | None) -> datetime | None: ...
def from_epoch(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def seconds(duration: timedelta) -> float:
    value = duration.total_seconds()
    if value < 0:
        raise ConfigError(f"a retention must not be negative (got {duration})")
    return value


def check_lease(lease_s: float) -> float:
    if not 0 < lease_s <= 7 * 24 * 3600:
        raise ConfigError(f"lease_s must be > 0 and at most 7 days (got {lease_s!r})")
    return float(lease_s)


def dump_json(data: JsonValue) -> str:
    """Compact JSON text of ``data``; ConfigError for what JSON cannot hold (NaN, sets, objects...)."""
    try:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"state stores keep JSON values only: {exc}") from exc


def load_json(text: str, **where: Any) -> Any:
    """The value of JSON ``text``, or the module's ``_INVALID`` marker (logged with ``where``)."""
    try:
        return json.loads(text)
    except (TypeError, ValueError) as exc:
        _log.warning("state_entry_corrupt", error=str(exc)[:200], **where)
        return _INVALID


def is_invalid(value: Any) -> bool:
    return value is _INVALID


def load_result(text: str | None, task_id: UUID | str) -> ExecutionResult | None:
    """The stored result ``text``, or None when there is none or it is corrupt (logged as a warning)."""
    if text is None:
        return None
    try:
        return ExecutionResult.model_validate_json(text)
    except ValidationError as exc:
        _log.warning("stored_result_corrupt", task_id=str(task_id), error=str(exc)[:200])
        return None
