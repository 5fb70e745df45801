"""The page templates (Jinja2, every value escaped) and the filters they use.

``autoescape=True`` for every template: whatever a page shows (task prompts and outputs, dead letters,
worker and agent names) is untrusted text, escaped where it is written; no template marks anything safe.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import jinja2

__all__ = ["Pages", "age", "duration", "pretty_json"]


def age(then: datetime | float | None, now: datetime | None = None) -> str:
    """``12s``, ``3m 4s``, ``2h 5m``, ``3d 2h`` since ``then`` (``-`` when unknown)."""
    if then is None:
        return "-"
    when = then if isinstance(then, datetime) else datetime.fromtimestamp(then, UTC)
    return duration(max(0.0, ((now or datetime.now(UTC)) - when).total_seconds()))


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.2f}s"
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else "-"


class Pages:
    """The console's templates; :meth:`render` one with its values."""

    def __init__(self) -> None:
        self._env = jinja2.Environment(
            loader=jinja2.PackageLoader("relaybus.console", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._env.filters.update(age=age, duration=duration, pretty_json=pretty_json, when=_when)

    def render(self, template: str, **values: Any) -> str:
        return self._env.get_template(template).render(**values)
