"""The ``script`` mode: run a command registered by name, with an argument list, never through a shell.

Register commands with ``executor.register_script("lint", ["ruff", "check"])``; a task then names one and may
add arguments::

    AgentTask(topic="code.lint", mode="script", input={"script": "lint", "args": ["src/"]})

What callers may rely on:

- Only registered commands run; the task's ``args`` (strings only, at most 256 of at most 8,192 characters
  each, no NUL) reach the program as they are (no shell, so ``;``, ``$(...)`` and globs mean nothing), after
  the registered argv and, by default, after ``--``: each script declares the arguments it takes
  (:class:`~relaybus.executor.script_args.ScriptArgs`: patterns, options or not, paths confined to a
  directory), and arguments it does not take end the task as REJECTED.
- The process runs in its own session (process group) with stdin closed and a minimal environment
  (``PATH=os.defpath``, ``LANG=C.UTF-8``) plus the ``env`` given at registration, never the worker's own
  environment (which holds API keys).
- On timeout or cancellation the whole process group is killed (SIGKILL) and reaped; when the command exits,
  whatever it left running in its group is killed too, so no orphan outlives the task.
- stdout and stderr are each captured up to ``script_max_output_bytes`` (the rest is read and dropped;
  ``truncated`` says so), decoded as UTF-8 with replacement.
- Output is ``{"exit_code", "stdout", "stderr", "truncated"}``; exit code 0 is SUCCESS, anything else a
  FAILURE (``ScriptFailed``) carrying the same output.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pydantic import JsonValue

from relaybus.exceptions import ExecutorError
from relaybus.messages import AgentTask, ExecutionResult, ExecutionStatus

from .backend import RunContext
from .script_args import MAX_ARGS, ScriptArgs

__all__ = ["Script", "ScriptBackend"]

MAX_ARG_CHARS = 8192
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Script:
    """A registered command: the resolved argv, its extra environment, working directory and the arguments
    it takes from a task."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    args: ScriptArgs = field(default_factory=ScriptArgs)


class ScriptBackend:
    """Runs registered commands (see the module docstring)."""

    def __init__(self, *, max_output_bytes: int) -> None:
        self.max_output_bytes = max_output_bytes
        self._scripts: dict[str, Script] = {}

    def __repr__(self) -> str:
        return f"ScriptBackend(scripts={sorted(self._scripts)})"

    @property
    def scripts(self) -> tuple[str, ...]:
        return tuple(sorted(self._scripts))

    def register(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        args: ScriptArgs | None = None,
    ) -> Script:
        """Let tasks run ``argv`` plus their args (as ``args`` allows: by default after ``--``) as script
        ``name``; raises ExecutorError when unusable."""

        if not isinstance(name, str) or not _NAME.match(name):
            raise ExecutorError(
                f"script name {name!r} is invalid: use 1-100 letters, digits, '_', '-' or '.'"
            )
        if isinstance(argv, str) or not argv or not all(isinstance(a, str) and "\0" not in a for a in argv):
            raise ExecutorError(
                f"script {name!r} needs an argument list such as ['ruff', 'check'], not a shell string"
            )
        program = shutil.which(argv[0]) if os.sep not in argv[0] else argv[0]
        if program is None or not os.access(program, os.X_OK):
            raise ExecutorError(
                f"script {name!r}: command {argv[0]!r} is not an executable on PATH; give an absolute path"
            )
        if args is not None and not isinstance(args, ScriptArgs):
            raise ExecutorError(
                f"script {name!r}: args must be a ScriptArgs, e.g. ScriptArgs(pattern=r'\\w+')"
            )
        script = Script(name, (program, *argv[1:]), dict(env or {}), cwd, args or ScriptArgs())
        self._scripts[name] = script
        return script

    async def run(self, task: AgentTask, ctx: RunContext) -> ExecutionResult:
        checked = self._check(task.input)
        if isinstance(checked, str):
            return ExecutionResult.failed(task.id, ExecutionStatus.REJECTED, "InvalidScriptRequest", checked)
        script, args = checked
        env = {"PATH": os.defpath, "LANG": "C.UTF-8", **script.env}
        loop = asyncio.get_running_loop()
        spawning = asyncio.ensure_future(
            loop.subprocess_exec(
                lambda: _Protocol(loop),
                *script.argv,
                *args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                env=env,
                cwd=script.cwd,
            )
        )
        try:
            transport, protocol = await asyncio.shield(spawning)
        except asyncio.CancelledError:
            # Cancelled (a timeout, a cancel request) while the process was being started: it may already run
            # and have children of its own, which asyncio's own clean-up (it kills the process alone) would
            # leave behind. Let the start finish, then kill the whole group.
            with contextlib.suppress(Exception):
                started, _ = await spawning
                _kill_group(started.get_pid())
                started.close()
            raise
        pid = transport.get_pid()
        ctx.log.debug("script_started", script=script.name, pid=pid)
        assert protocol.stdout is not None
        assert protocol.stderr is not None
        readers = (
            asyncio.ensure_future(_read_capped(protocol.stdout, self.max_output_bytes)),
            asyncio.ensure_future(_read_capped(protocol.stderr, self.max_output_bytes)),
        )
        done = False
        try:
            # Wait for the exit itself, not for the pipes: a child left in the background may hold them open.
            await protocol.exited.wait()
            _kill_group(pid)  # what the command left behind in its group goes too, closing the pipes
            (stdout, out_cut), (stderr, err_cut) = await asyncio.gather(*readers)
            done = True
        finally:
            if not done:  # timeout or cancellation: kill the group, then let the CancelledError through
                _kill_group(pid)
                for reader in readers:
                    reader.cancel()
            transport.close()
        exit_code = transport.get_returncode()
        assert exit_code is not None
        output: JsonValue = {
            "exit_code": exit_code,
            "stdout": stdout.decode("utf-8", "replace"),
            "stderr": stderr.decode("utf-8", "replace"),
            "truncated": out_cut or err_cut,
        }
        if exit_code == 0:
            return ExecutionResult.success(task.id, output)
        tail = stderr.decode("utf-8", "replace")[-500:]
        return ExecutionResult.failed(
            task.id,
            ExecutionStatus.FAILURE,
            "ScriptFailed",
            f"script {script.name!r} exited with code {exit_code}: {tail}".rstrip(": "),
            output=output,
        )

    def _check(self, spec: Mapping[str, JsonValue]) -> tuple[Script, list[str]] | str:
        unknown = set(spec) - {"script", "args"}
        if unknown:
            return f"unknown keys {sorted(unknown)} in the script task input: use 'script' and 'args'"
        name = spec.get("script")
        script = self._scripts.get(name) if isinstance(name, str) else None
        if script is None:
            known = ", ".join(self.scripts) or "none yet"
            return (
                f"script {name!r} is not registered (registered: {known}); register it with "
                "executor.register_script(name, [program, arg, ...])"
            )
        raw = spec.get("args", [])
        if not isinstance(raw, list) or not all(isinstance(a, str) for a in raw):
            return "args must be a list of strings"
        args = [str(a) for a in raw]
        if len(args) > MAX_ARGS:
            return f"at most {MAX_ARGS} args are allowed, got {len(args)}"
        for arg in args:
            if len(arg) > MAX_ARG_CHARS or "\0" in arg:
                return f"each arg must be at most {MAX_ARG_CHARS} characters without NUL bytes"
        tail = script.args.argv_tail(args, cwd=script.cwd)
        if isinstance(tail, str):
            return f"script {script.name!r}: {tail}"
        return script, tail


class _Protocol(asyncio.subprocess.SubprocessStreamProtocol):
    """Stream protocol that also says when the process exited (``Process.wait`` also waits for the pipes)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=_CHUNK, loop=loop)
        self.exited = asyncio.Event()

    def process_exited(self) -> None:
        super().process_exited()
        self.exited.set()


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


async def _read_capped(stream: asyncio.StreamReader, cap: int) -> tuple[bytes, bool]:
    """Read ``stream`` to EOF, keeping the first ``cap`` bytes (so the child never blocks on a full pipe)."""
    kept = bytearray()
    truncated = False
    while chunk := await stream.read(_CHUNK):
        room = cap - len(kept)
        if len(chunk) > room:
            truncated = True
        kept += chunk[: max(room, 0)]
    return bytes(kept), truncated
