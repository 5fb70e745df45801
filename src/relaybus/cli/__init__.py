"""The ``relaybus`` command line. Each sub-command lives in its own module with ``register(subparsers)``.

This package is the edge of the program: the only place that reads the environment for defaults and starts the
process's one event loop (``asyncio.run``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from ._common import BadUsage
from ._options import CommandParser, add_global_options, chosen_parser

__all__ = ["build_parser", "main"]

# Sub-command modules, each with ``register(subparsers) -> None`` that sets ``func`` on its parser.
# ``func(args) -> int`` returns the exit code.
_COMMANDS: tuple[str, ...] = (
    "worker",
    "submit",
    "cancel",
    "status",
    "agents",
    "dlq",
    "run",
    "runs",
    "demo",
    "gateway",
    "schema",
    "completion",
    "console",
)
# Commands that run until stopped log their life at INFO; the others are one-shot commands whose output is
# the point, so their default level is WARNING (no connect/close chatter around a table or a JSON result).
_LONG_RUNNING = frozenset({"worker", "gateway", "console"})
# Options that take a value, so that the word after them is not taken for the sub-command.
_VALUED_OPTIONS = frozenset({"--log-level", "--log-format"})


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser, or with ``only`` the parser of that one sub-command (imports only its module)."""
    from relaybus import __version__

    parser = CommandParser(
        prog="relaybus", description="Run LLM agents as distributed processes over RabbitMQ."
    )
    parser.add_argument("--version", action="version", version=f"relaybus {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in (only,) if only else _COMMANDS:
        importlib.import_module(f"relaybus.cli.{name}").register(sub)
    add_global_options(parser)
    return parser


def _chosen_command(argv: Sequence[str]) -> str | None:
    # The first word that is not an option (or an option's value) names the sub-command. Importing only its
    # module keeps a worker process small: `run` and `demo` pull in the orchestrator, YAML and the HTTP stack.
    words = iter(argv)
    for word in words:
        if word in _VALUED_OPTIONS:
            next(words, None)
        elif not word.startswith("-"):
            return word if word in _COMMANDS else None
    return None


def log_level_of(args: argparse.Namespace) -> str:
    """The level asked for, else INFO for a long-running command and WARNING for a one-shot one."""
    level = getattr(args, "log_level", None)
    if level:
        return str(level)
    return "INFO" if args.command in _LONG_RUNNING else "WARNING"


def main(argv: Sequence[str] | None = None) -> int:
    from relaybus.log import configure_logging

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_chosen_command(argv))
    args, extra = parser.parse_known_args(argv)
    command_parser = chosen_parser(parser, args)
    if extra:  # reported by the sub-command that was given them, with its usage, not the top-level one
        command_parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    log_format = getattr(args, "log_format", None)
    configure_logging(level=log_level_of(args), json=None if log_format is None else log_format == "json")
    shutdown_tracing = _tracing(args, command_parser)
    try:
        return int(args.func(args))
    except BadUsage as exc:
        command_parser.error(exc.message)
    except KeyboardInterrupt:
        return 130
    finally:
        if shutdown_tracing is not None:
            shutdown_tracing()


def _tracing(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Callable[[], None] | None:
    """The OpenTelemetry SDK set up from ``OTEL_*`` if they ask for it (see relaybus.telemetry.otel_setup)."""
    from relaybus.exceptions import ConfigError
    from relaybus.telemetry.otel_setup import configure_tracing

    try:
        return configure_tracing(os.environ, service=f"relaybus-{args.command}")
    except ConfigError as exc:
        parser.error(str(exc))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
