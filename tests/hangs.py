"""A test that hangs fails on its own, and says where every asyncio task of it was waiting.

pytest-timeout (``timeout`` in pyproject.toml) fails a test, fixtures included, that runs longer than
the limit: a hang costs that test, not the whole CI run. Its signal method prints the threads' stacks,
which for an async test shows only the event loop's ``select``; the handler installed here first prints
the stack of every task of the loop that was running, then fails the test as pytest-timeout does.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from types import FrameType
from typing import Any

import pytest
import pytest_timeout  # type: ignore[import-untyped]

__all__ = ["asyncio_task_stacks", "pytest_timeout_set_timer"]


def asyncio_task_stacks(loop: asyncio.AbstractEventLoop | None) -> str:
    """Where each task of ``loop`` waits (its coroutine's frames, innermost last); "" without a loop."""
    if loop is None:
        return ""
    lines: list[str] = []
    for task in sorted(asyncio.all_tasks(loop), key=lambda t: t.get_name()):
        lines.append(f"task {task.get_name()} ({task.get_coro()!r:.120})")
        for frame in task.get_stack(limit=20):
            code = frame.f_code
            lines.append(f"  {code.co_filename}:{frame.f_lineno} in {code.co_name}")
    return "\n".join(lines)


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> bool | None:
    """pytest-timeout's hook, for the signal method (the default here); None leaves the others to it.

    A plugin: tests/conftest.py imports it (``-p tests.hangs`` elsewhere)."""
    if settings.method != "signal" or threading.current_thread() is not threading.main_thread():
        return None

    def on_timeout(signum: int, frame: FrameType | None) -> None:
        __tracebackhide__ = True
        stacks = asyncio_task_stacks(asyncio._get_running_loop())
        if stacks:
            terminal = item.config.get_terminal_writer()
            terminal.sep("+", title="asyncio tasks at the timeout")
            terminal.line(stacks)
        pytest_timeout.timeout_sigalrm(item, settings)

    def cancel() -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)

    item.cancel_timeout = cancel  # type: ignore[attr-defined]  # pytest-timeout's cancel hook calls it
    signal.signal(signal.SIGALRM, on_timeout)
    signal.setitimer(signal.ITIMER_REAL, settings.timeout)
    return True
