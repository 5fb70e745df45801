"""Logging: relaybus logs through stdlib ``logging`` (quiet as a library); ``configure_logging`` renders it.

Events are short snake_case names with fields; context (task_id, agent, worker) is bound once per task.

- **As a library** relaybus writes nothing of its own: its structlog loggers hand each event to the stdlib
  logger of the same name under ``relaybus`` (``relaybus.worker``, ...), which has a ``NullHandler``. An
  application that configures ``logging`` sees the events there: the record's message reads
  ``task_done agent=echo status=success ...`` and ``record.msg`` is the event's dict of fields, which
  ``structlog.stdlib.ProcessorFormatter`` renders as structlog would. If the application configured
  structlog itself, relaybus leaves its configuration alone and logs through it.
- **The CLI** calls :func:`configure_logging`: one handler on stderr, console lines on a terminal and JSON
  lines otherwise, with the same event names and bound fields; other libraries' records (aio-pika's) at
  WARNING and above are rendered the same way.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import IO, Any

import structlog
from structlog.typing import EventDict, FilteringBoundLogger, WrappedLogger

__all__ = ["FilteringBoundLogger", "IntervalSampler", "configure_logging", "get_logger"]

ROOT_LOGGER = "relaybus"
logging.getLogger(ROOT_LOGGER).addHandler(logging.NullHandler())


class _Event(dict[str, Any]):
    """An event as a stdlib record's ``msg``: its fields for structlog's formatter, one line for any other."""

    def __str__(self) -> str:
        fields = " ".join(f"{key}={value}" for key, value in self.items() if key != "event")
        return f"{self.get('event', '')} {fields}" if fields else str(self.get("event", ""))


def _to_stdlib(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> Any:
    """Last processor: hand the event to the stdlib logger (what ``ProcessorFormatter.wrap_for_formatter``
    does, with a message that reads well in a plain ``logging`` format too)."""
    return (_Event(event_dict),), {"extra": {"_logger": logger, "_name": method_name}}


def _add_trace_ids(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """``trace_id`` and ``span_id`` of the current span, if any. No trace exists before relaybus's trace
    context module is loaded (on the first publish or delivery), so until then this costs a dict lookup."""
    context = sys.modules.get("relaybus.telemetry.trace_context")
    if context is not None:
        context.add_trace_ids(event_dict)
    return event_dict


def _structlog_config(wrapper_class: type[FilteringBoundLogger], *, cache: bool) -> dict[str, Any]:
    return {
        "processors": [
            structlog.stdlib.filter_by_level,  # stdlib's level decides, before any work is done
            structlog.contextvars.merge_contextvars,
            _add_trace_ids,
            _to_stdlib,
        ],
        "wrapper_class": wrapper_class,
        "logger_factory": structlog.stdlib.LoggerFactory(),
        "cache_logger_on_first_use": cache,
    }


def get_logger(name: str, **context: Any) -> FilteringBoundLogger:
    """A structlog logger for ``name`` with ``context`` bound (typed, so mypy checks every log call).

    Unless the application (or :func:`configure_logging`) configured structlog, the first call routes
    structlog to stdlib ``logging`` (see the module docstring), so nothing is printed by default.
    """
    if not structlog.is_configured():
        # No level filter of structlog's own: stdlib's effective level (WARNING unless set) applies.
        structlog.configure(
            **_structlog_config(structlog.make_filtering_bound_logger(logging.DEBUG), cache=False)
        )
    logger: FilteringBoundLogger = structlog.get_logger(name)
    return logger.bind(**context) if context else logger


class IntervalSampler:
    """At most one event per ``interval_s`` is let through: for lines too costly to write for every event
    (a JSON line costs about as much CPU as a no-op task's whole round trip, see bench/telemetry.py)."""

    def __init__(self, interval_s: float = 1.0) -> None:
        self._interval_s = interval_s
        self._next = 0.0
        self._skipped = 0

    def sample(self) -> int | None:
        """None: skip this event; else it is let through, and this is how many were skipped before it."""
        now = time.monotonic()
        if now < self._next:
            self._skipped += 1
            return None
        self._next = now + self._interval_s
        skipped, self._skipped = self._skipped, 0
        return skipped


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The one handler :func:`configure_logging` installs (found again, and replaced, by its type)."""


def configure_logging(
    *, level: str = "INFO", json: bool | None = None, stream: IO[str] | None = None
) -> None:
    """Render relaybus's events (at ``level`` and above) and other libraries' warnings to ``stream``
    (default ``sys.stderr``): console lines on a terminal, JSON lines otherwise (``json`` forces one or the
    other). Calling it again replaces the previous set-up. Never writes to stdout unless given stdout."""
    out = sys.stderr if stream is None else stream
    if json is None:
        json = not out.isatty()
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        from relaybus.exceptions import ConfigError

        raise ConfigError(f"unknown log level {level!r}: use DEBUG, INFO, WARNING, ERROR or CRITICAL")
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    handler = _Handler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.format_exc_info if json else structlog.processors.StackInfoRenderer(),
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)
    logging.getLogger(ROOT_LOGGER).setLevel(numeric)
    # structlog drops what is below ``level`` before any processor runs (the cheapest filter there is).
    structlog.configure(**_structlog_config(structlog.make_filtering_bound_logger(numeric), cache=True))
