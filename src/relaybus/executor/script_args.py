"""What arguments a registered script takes from a task: ``ScriptArgs``, declared at registration.

A task's ``args`` are untrusted: anyone who can publish a task chooses them. Appended to a registered argv
as they are, ``["--output=FILE"]`` makes a registered ``git log`` write a file. So every script declares
what it takes, and the default is the safe one::

    executor.register_script("log", ["git", "log"], args=ScriptArgs(pattern=r"[0-9a-f]{7,40}"))
    executor.register_script("show", ["cat"], args=ScriptArgs(paths_under="/srv/reports"))
    executor.register_script("py", [sys.executable, "-c"], args=ScriptArgs(separator=False, max_args=1))

- ``options=False`` (the default): a task argument is never an option. With ``separator=True`` (the
  default) the arguments follow ``--`` (``git log -- --output=FILE`` takes it as a path, not an option);
  for a program that does not know ``--`` (``printf``, ``python -c``) set ``separator=False``: then an
  argument that begins with ``-`` is refused instead. ``options=True`` appends the arguments as they are,
  options included: only for a command none of whose options can do harm.
- ``pattern``: a regular expression every argument must match as a whole; ``patterns``: one per position
  (no more arguments than patterns). ``max_args`` caps the count (at most 256).
- ``paths_under``: every argument is a path that must lie inside this directory once resolved (symlinks
  and ``..`` followed; a relative path counts from the script's ``cwd``, else the worker's).

A refused argument ends the task as REJECTED (``InvalidScriptRequest``) with the reason; nothing runs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from relaybus.exceptions import ExecutorError

__all__ = ["MAX_ARGS", "ScriptArgs"]

MAX_ARGS = 256


@dataclass(frozen=True)
class ScriptArgs:
    """The arguments a script takes (see the module docstring); ``ScriptArgs()`` is the default."""

    pattern: str | None = None
    patterns: Sequence[str] | None = None
    options: bool = False
    separator: bool = True
    paths_under: str | None = None
    max_args: int = MAX_ARGS
    _compiled: tuple[re.Pattern[str], ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0 <= self.max_args <= MAX_ARGS:
            raise ExecutorError(f"ScriptArgs max_args must be 0..{MAX_ARGS}, got {self.max_args!r}")
        if self.pattern is not None and self.patterns is not None:
            raise ExecutorError(
                "ScriptArgs takes pattern (every argument) or patterns (per position), not both"
            )
        sources = [self.pattern] if self.pattern is not None else list(self.patterns or ())
        try:
            compiled = tuple(re.compile(p) for p in sources)
        except (re.error, TypeError) as exc:
            raise ExecutorError(f"ScriptArgs pattern is not a regular expression: {exc}") from None
        object.__setattr__(self, "_compiled", compiled)
        if self.paths_under is not None:
            if not os.path.isdir(self.paths_under):
                raise ExecutorError(f"ScriptArgs paths_under {self.paths_under!r} is not a directory")
            object.__setattr__(self, "paths_under", os.path.realpath(self.paths_under))

    def argv_tail(self, args: Sequence[str], *, cwd: str | None) -> list[str] | str:
        """What follows the registered argv for the task's ``args``, or why they are refused."""
        limit = self.max_args if self.patterns is None else min(self.max_args, len(self.patterns))
        if len(args) > limit:
            return f"this script takes at most {limit} argument(s), got {len(args)}"
        for position, arg in enumerate(args):
            problem = self._problem(position, arg, cwd)
            if problem is not None:
                return f"argument {position + 1} {arg[:200]!r} is refused: {problem}"
        if self.options or not self.separator or not args:
            return list(args)
        return ["--", *args]

    def _problem(self, position: int, arg: str, cwd: str | None) -> str | None:
        if not self.options and not self.separator and arg.startswith("-"):
            return "this script takes no options (it was registered with options=False, separator=False)"
        if self._compiled:
            pattern = self._compiled[0] if self.pattern is not None else self._compiled[position]
            if pattern.fullmatch(arg) is None:
                return f"it does not match the script's pattern {pattern.pattern!r}"
        if self.paths_under is not None:
            base = cwd if cwd is not None else os.getcwd()
            resolved = os.path.realpath(os.path.join(base, arg))
            if os.path.commonpath([resolved, self.paths_under]) != self.paths_under:
                return f"the path is outside {self.paths_under!r}, the only directory this script may read"
        return None
