"""Group commit: calls made while the store is busy are run together, in one statement or transaction.

A :class:`Batcher` queues each call's item with a future and runs the queue in batches, one batch at a time:
the calls of one event-loop turn make the first batch, and those made while a batch runs make the next. A
batch holds each key (a task id) at most once and at most ``max_size`` items; the rest wait for the next.
Callers may rely on:

- each gets its own answer, or its own exception, as the batch's ``run`` gave it for its item;
- an exception raised by ``run`` itself fails only the callers of that batch (the next batch runs); each
  caller gets an instance of its own (same type and message, the batch's exception as its ``__cause__``), so
  that one caller's traceback and handling never show in another's;
- a caller cancelled before its batch started is left out of it; one cancelled later is not waited for,
  and its item is done or not done as a whole, like any call cancelled mid-flight.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from relaybus.exceptions import ConfigError

__all__ = ["DEFAULT_BATCH_SIZE", "Batcher", "own_instance"]

DEFAULT_BATCH_SIZE = 256
"""At most this many calls share a statement (bounded, so one batch's statement stays short)."""

T = TypeVar("T")
R = TypeVar("R")


@dataclass(slots=True)
class _Pending(Generic[T, R]):
    key: Hashable
    item: T
    future: asyncio.Future[R]


class Batcher(Generic[T, R]):
    """Runs ``run(items)`` for batches of queued items; ``run`` answers with one result or exception per
    item, in the items' order."""

    def __init__(
        self,
        run: Callable[[list[T]], Awaitable[list[R | Exception]]],
        *,
        max_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        if max_size < 1:
            raise ConfigError(f"max_size must be >= 1 (got {max_size})")
        self._run = run
        self.max_size = max_size
        self._queue: list[_Pending[T, R]] = []
        self._draining: asyncio.Task[None] | None = None
        self.batches = 0
        """Batches run so far (for tests and metrics)."""

    async def submit(self, key: Hashable, item: T) -> R:
        """``item``'s answer, once its batch has run."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(key, item, future))
        if self._draining is None:
            # Started as a task, so it first runs after this turn of the loop: every call of the turn joins.
            # In a context of its own: the batch is no one caller's (its log context, its trace span).
            loop = asyncio.get_running_loop()
            self._draining = loop.create_task(self._drain(), context=contextvars.Context())
        return await future

    async def wait_idle(self) -> None:
        """Return once no batch is queued or running (e.g. before the store closes its connections)."""
        while (draining := self._draining) is not None:
            await asyncio.shield(draining)

    def _next_batch(self) -> list[_Pending[T, R]]:
        batch: list[_Pending[T, R]] = []
        later: list[_Pending[T, R]] = []
        keys: set[Hashable] = set()
        for pending in self._queue:
            if pending.future.done():  # its caller was cancelled
                continue
            if len(batch) < self.max_size and pending.key not in keys:
                keys.add(pending.key)
                batch.append(pending)
            else:
                later.append(pending)
        self._queue = later
        return batch

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = self._next_batch()
                if batch:
                    await self._run_batch(batch)
        except BaseException:
            for pending in self._queue:  # cancelled itself (the loop is closing): nobody will run these
                pending.future.cancel()
            self._queue = []
            raise
        finally:
            self._draining = None

    async def _run_batch(self, batch: list[_Pending[T, R]]) -> None:
        self.batches += 1
        try:
            answers = await self._run([pending.item for pending in batch])
            if len(answers) != len(batch):
                raise AssertionError(f"a batch of {len(batch)} got {len(answers)} answers")
        except Exception as exc:
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(own_instance(exc))
            return
        except BaseException:
            for pending in batch:
                pending.future.cancel()
            raise
        for pending, answer in zip(batch, answers, strict=True):
            if pending.future.done():
                continue
            if isinstance(answer, Exception):
                pending.future.set_exception(answer)
            else:
                pending.future.set_result(answer)


def own_instance(exc: Exception) -> Exception:
    """A copy of ``exc`` for one caller of a failed batch, caused by ``exc``; ``exc`` itself when it cannot be
    copied faithfully (an exception whose constructor does not take its own ``args`` back)."""
    try:
        mine = copy.copy(exc)
    except Exception:
        return exc
    if type(mine) is not type(exc) or mine.args != exc.args or str(mine) != str(exc):
        return exc
    mine.__cause__ = exc
    return mine
