"""``relaybus completion bash|zsh|fish``: print a shell completion script for every command and option.

Generated from the command line's own parser by ``shtab``, so it never goes stale: sub-commands, their
options and the choices of ``--log-level`` and friends complete; file arguments (a plan file, ``--body``)
complete file names. Install it with, for example::

    relaybus completion bash > ~/.local/share/bash-completion/completions/relaybus
    relaybus completion zsh > "${fpath[1]}/_relaybus"
    relaybus completion fish > ~/.config/fish/completions/relaybus.fish
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["SHELLS", "register", "script"]

SHELLS = ("bash", "zsh", "fish")


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "completion",
        help="print a shell completion script (bash, zsh or fish)",
        description="Print the completion script of SHELL on stdout, e.g. "
        "`relaybus completion bash > ~/.local/share/bash-completion/completions/relaybus`.",
    )
    parser.add_argument("shell", choices=SHELLS, metavar="SHELL", help="bash, zsh or fish")
    parser.set_defaults(func=run)


def script(shell: str) -> str:
    """The completion script of ``shell`` for the whole ``relaybus`` command line."""
    import shtab

    from . import build_parser

    parser = build_parser()
    _complete_paths(parser, shtab.FILE)
    return str(shtab.complete(parser, shell))  # positional: `shell=` reads as a subprocess flag to audits


def _complete_paths(parser: argparse.ArgumentParser, file: Any) -> None:
    """Arguments whose value is a path complete file names."""
    from ._options import sub_parsers

    for each in (parser, *sub_parsers(parser)):
        for action in each._actions:
            if action.type is Path:
                action.complete = file  # type: ignore[attr-defined]  # shtab reads this attribute


def run(args: argparse.Namespace) -> int:
    print(script(args.shell))
    return 0
