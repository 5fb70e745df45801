"""The ``relaybus`` command line. Each sub-command lives in its own module with ``register(subparsers)``.

This package is the edge of the program: the only place that reads the environment for defaults and starts the
process's one event loop (``asyncio.run``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["main"]

# Sub-command modules, each with ``register(subparsers) -> None`` that sets ``func`` on its parser.
# ``func(args) -> int`` returns the exit code.
_COMMANDS: tuple[str, ...] = ("worker", "submit", "agents", "dlq", "run", "demo", "gateway")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser, or with ``only`` the parser of that one sub-command (imports only its module)."""
    parser = argparse.ArgumentParser(
        prog="relaybus", description="Run LLM agents as distributed processes over RabbitMQ."
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="DEBUG, INFO, WARNING or ERROR (default INFO); give it before the sub-command",
    )
    parser.add_argument(
        "--log-json", action="store_true", default=None, help="JSON log lines even on a terminal"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in (only,) if only else _COMMANDS:
        importlib.import_module(f"relaybus.cli.{name}").register(sub)
    return parser


def _chosen_command(argv: Sequence[str]) -> str | None:
    # The first word that is not an option (or an option's value) names the sub-command. Importing only its
    # module keeps a worker process small: `run` and `demo` pull in the orchestrator, YAML and the HTTP stack.
    words = iter(argv)
    for word in words:
        if word == "--log-level":
            next(words, None)
        elif not word.startswith("-"):
            return word if word in _COMMANDS else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    from relaybus.log import configure_logging

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_chosen_command(argv))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    configure_logging(level=args.log_level, json=args.log_json)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
