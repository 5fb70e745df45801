"""What every ``relaybus`` command shares on its command line: the logging options (accepted before or after
the sub-command), the help format that shows defaults, and placeholders named after the kind of value.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

from ._common import non_negative_float, positive_float, positive_int

__all__ = [
    "LOG_FORMATS",
    "LOG_LEVELS",
    "CommandParser",
    "HelpFormatter",
    "add_global_options",
    "chosen_parser",
    "sub_parsers",
]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("console", "json")

# The placeholder of an option without one of its own says what kind of value it takes.
_PLACEHOLDERS: dict[object, str] = {
    positive_int: "N",
    positive_float: "SECONDS",
    non_negative_float: "SECONDS",
}


class HelpFormatter(argparse.HelpFormatter):
    """Ends an option's help with its default, unless the help already speaks of it or there is none."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            not action.option_strings
            or text == argparse.SUPPRESS
            or "default" in text
            or default is None
            or default is False
            or default == ""
            or default == argparse.SUPPRESS
        ):
            return action.help
        shown = (f"{default:g}" if isinstance(default, float) else str(default)).replace("%", "%%")
        bare = f" ({shown})"
        if text.endswith(bare):  # "... (30)" says the default without the word: say it with the word
            text = text[: -len(bare)]
        return f"{text} (default {shown})"


class CommandParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose help shows defaults; its sub-command parsers are ``CommandParser`` too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def _subparsers_action(parser: argparse.ArgumentParser) -> argparse._SubParsersAction[Any] | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def sub_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """Every parser below ``parser`` (sub-commands, and their sub-commands), each once."""
    action = _subparsers_action(parser)
    if action is None:
        return
    for child in {id(p): p for p in action.choices.values()}.values():
        yield child
        yield from sub_parsers(child)


def chosen_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the (innermost) sub-command ``args`` were parsed for, else ``parser`` itself."""
    while (action := _subparsers_action(parser)) is not None:
        name = getattr(args, action.dest, None)
        if name not in action.choices:
            break
        parser = action.choices[name]
    return parser


def _add_logging_options(parser: argparse.ArgumentParser, default: Any) -> None:
    group = parser.add_argument_group("logging (before or after the sub-command)")
    group.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default=default,
        metavar="LEVEL",
        help="DEBUG, INFO, WARNING or ERROR (default INFO for worker, WARNING for one-shot commands)",
    )
    group.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=default,
        metavar="FORMAT",
        help="console or json (default console on a terminal, json otherwise)",
    )
    group.add_argument(
        "--log-json",
        dest="log_format",
        action="store_const",
        const="json",
        default=default,
        help=argparse.SUPPRESS,  # the older spelling of --log-format json, still accepted
    )


def _name_placeholders(parser: argparse.ArgumentParser) -> None:
    for action in parser._actions:
        if action.metavar is None and action.option_strings and action.nargs != 0:
            placeholder = _PLACEHOLDERS.get(action.type)
            if placeholder is not None:
                action.metavar = placeholder


def add_global_options(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` and every sub-command parser below it the logging options and placeholders.

    Below the top level the options default to ``SUPPRESS``: given after the sub-command they win, and when
    they are not given there the value given before it (or None) stays.
    """
    _add_logging_options(parser, None)
    _name_placeholders(parser)
    for child in sub_parsers(parser):
        _add_logging_options(child, argparse.SUPPRESS)
        _name_placeholders(child)
