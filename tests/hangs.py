"""A test that hangs fails on its own, and says where every asyncio task of it was waiting.

pytest-timeout (``timeout`` in pyproject.toml) fails a test, fixtures included, that runs longer than
the limit: a hang costs that test, not the whole CI run. Its signal method prints the threads' stacks,
which for an async test shows only the event loop's ``select``; the handler installed here first prints
the stack of every task of the loop that was running, then fails the test as pytest-timeout does.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import signal
import threading
from types import FrameType
from typing import Any

import pytest
import pytest_timeout  # type: ignore[import-untyped]

__all__ = ["asyncio_task_stacks", "pytest_timeout_set_timer"]


def asyncio_task_stacks(loop: asyncio.AbstractEventLoop | None) -> str:
    """Where each task of ``loop`` waits: the whole chain of what its coroutine awaits, outermost first,
    through coroutines and async generators (a fixture's teardown awaits its generator's ``__anext__``,
    whose frames ``Task.get_stack`` does not show), ending at the future or task it waits on; "" without a
    loop."""
    if loop is None:
        return ""
    lines: list[str] = []
    for task in sorted(asyncio.all_tasks(loop), key=lambda t: t.get_name()):
        lines.append(f"task {task.get_name()} ({task.get_coro()!r:.120})")
        lines.extend(f"  {line}" for line in await_chain(task.get_coro()))
    return "\n".join(lines)


_OPAQUE = ("async_generator_asend", "async_generator_athrow", "FutureIter")


def await_chain(awaitable: object, *, limit: int = 40) -> list[str]:
    """The frames of ``awaitable`` and of what it awaits, in turn, and what the innermost waits on."""
    lines: list[str] = []
    current: object = awaitable
    for _ in range(limit):
        frame = getattr(current, "cr_frame", None) or getattr(current, "ag_frame", None)
        if frame is not None:
            lines.append(f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        following = getattr(current, "cr_await", None)
        if following is None:
            following = getattr(current, "ag_await", None)
        if following is None and type(current).__name__ in _OPAQUE:
            # No attribute leads from ``agen.__anext__()`` to ``agen``, or from ``await future``'s iterator
            # to the future; the garbage collector's referents do.
            following = next(
                (r for r in gc.get_referents(current) if inspect.isasyncgen(r) or asyncio.isfuture(r)),
                None,
            )
        if following is None:
            if frame is None:
                lines.append(f"waits on {current!r:.200}")
            break
        current = following
    return lines


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
