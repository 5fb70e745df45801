"""Running the real ``relaybus`` command as a child process, for the CLI tests."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def _env(extra: Mapping[str, str] | None) -> dict[str, str]:
    # PYTHONPATH is dropped so the child finds relaybus as installed, as a user's shell would.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(extra or {})
    return env


def run_cli(
    *args: str, cwd: Path = REPO_ROOT, timeout: float = 60, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``relaybus ARGS`` to completion; ``env`` is added to this process's environment."""
    return subprocess.run(
        [sys.executable, "-m", "relaybus", *args],
        cwd=cwd,
        env=_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str


async def start_cli_async(*args: str, env: Mapping[str, str] | None = None) -> asyncio.subprocess.Process:
    """``relaybus ARGS`` started with pipes on stdout and stderr, for a test that reads them as they come."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "relaybus",
        *args,
        cwd=REPO_ROOT,
        env=_env(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def run_cli_async(*args: str, timeout: float = 60, env: Mapping[str, str] | None = None) -> Outcome:
    """``relaybus ARGS`` without blocking the test's event loop (for tests that also serve the bus)."""
    proc = await start_cli_async(*args, env=env)
    async with asyncio.timeout(timeout):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return Outcome(proc.returncode, out.decode(), err.decode())


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("relaybus: error: ")
    return lines[0]


def usage_error(proc: subprocess.CompletedProcess[str], command: str) -> str:
    """Assert ``proc`` failed as argparse does (exit 2, the usage of ``relaybus COMMAND``, then one error
    line naming that command); return the error line."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith(f"usage: relaybus {command} "), proc.stderr
    assert lines[-1].startswith(f"relaybus {command}: error: "), proc.stderr
    return lines[-1]


def table_rows(stdout: str, title: str) -> dict[str, dict[str, str]]:
    """The rows of the rich table printed under ``title``, by their first cell, as column -> cell text.

    A cell wrapped over several lines is joined with spaces."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == title)
    headers = [h.strip() for h in lines[start + 2].split("┃")[1:-1]]
    rows: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in lines[start + 4 :]:
        if not line.startswith("│"):
            break
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if cells[0]:
            current = rows[cells[0]] = dict(zip(headers, cells, strict=True))
        elif current is not None:
            for header, cell in zip(headers, cells, strict=True):
                if cell:
                    current[header] = f"{current[header]} {cell}".strip()
    return rows


def assert_fits(stdout: str, width: int) -> None:
    """No line of ``stdout`` is wider than ``width`` columns."""
    too_wide = [line for line in stdout.splitlines() if len(line) > width]
    assert not too_wide, "\n".join(too_wide)


@contextmanager
def started_worker(
    argv: Sequence[str], *, cwd: Path = REPO_ROOT, env: Mapping[str, str] | None = None, timeout: float = 30
) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """Start a long-running command (``argv`` in full) and read its output until ``worker_started``.

    Yields the process and the lines read so far; at the end a process still running is killed.
    """
    proc = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=_env(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + timeout
        while not any("worker_started" in line for line in lines):
            line = proc.stdout.readline()
            assert line, "the worker ended before it started:\n" + "".join(lines)
            assert time.monotonic() < deadline, f"no worker_started within {timeout:g} s:\n" + "".join(lines)
            lines.append(line)
        yield proc, lines
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
