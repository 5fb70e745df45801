"""structlog set-up, done once at the edge (the CLI); the library only asks for loggers.

Events are short snake_case names with fields; context (task_id, agent, worker) is bound once per task.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from structlog.typing import FilteringBoundLogger

__all__ = ["FilteringBoundLogger", "configure_logging", "get_logger"]


def get_logger(name: str, **context: Any) -> FilteringBoundLogger:
    """A structlog logger for ``name`` with ``context`` bound (typed, so mypy checks every log call)."""
    logger: FilteringBoundLogger = structlog.get_logger(name)
    return logger.bind(**context) if context else logger


def configure_logging(*, level: str = "INFO", json: bool | None = None) -> None:
    """Console output on a terminal, JSON lines otherwise (``json`` forces one or the other)."""
    if json is None:
        json = not sys.stderr.isatty()
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info if json else structlog.processors.StackInfoRenderer(),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
