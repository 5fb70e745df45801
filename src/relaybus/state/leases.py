"""What a worker does around a claim: wait while another holds it, and keep its own lease renewed.

:func:`claim_or_wait` turns HELD into waiting (polling) and a store that is down into retrying with backoff,
so a task never runs unclaimed; :class:`LeaseKeeper` renews a lease while the task runs and says when it
was lost. Both work with any :class:`StateStore`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self
from uuid import UUID

from relaybus._cancel import cancel_and_wait
from relaybus.exceptions import ConfigError, UsageError
from relaybus.log import get_logger

from .base import StateStore
from .codec import check_lease
from .errors import StoreUnavailable
from .records import Claim, ClaimOutcome

__all__ = ["LeaseKeeper", "claim_or_wait"]

_log = get_logger("relaybus.state")
_MAX_BACKOFF_S = 5.0


async def claim_or_wait(
    store: StateStore,
    task_id: UUID,
    *,
    worker: str,
    lease_s: float,
    digest: str,
    poll_s: float = 0.5,
    timeout_s: float | None = None,
) -> Claim:
    """Claim ``task_id`` until the answer is ACQUIRED, DONE or MISMATCH.

    While HELD it claims again every ``poll_s``; while the store is unavailable it retries with exponential
    backoff (``poll_s`` doubling up to 5 s). After ``timeout_s`` (None: no limit) it returns the last HELD
    claim, or raises the last :class:`StoreUnavailable`.
    """
    if poll_s <= 0:
        raise ConfigError(f"poll_s must be > 0 (got {poll_s})")
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    backoff = poll_s
    while True:
        try:
            claim = await store.claim(task_id, worker=worker, lease_s=lease_s, digest=digest)
        except StoreUnavailable as exc:
            if deadline is not None and time.monotonic() + backoff > deadline:
                raise
            _log.warning("state_store_unavailable", task_id=str(task_id), retry_in_s=backoff, error=str(exc))
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF_S)
            continue
        backoff = poll_s
        if claim.outcome is not ClaimOutcome.HELD:
            return claim
        if deadline is not None and time.monotonic() + poll_s > deadline:
            return claim
        await asyncio.sleep(poll_s)


class LeaseKeeper:
    """``async with LeaseKeeper(store, task_id, worker=..., lease_s=...)``: renews the lease every
    ``lease_s / 3`` seconds until the block ends.

    ``lost`` is set (and ``on_lost`` called) when a renewal answers that the lease is no longer this
    worker's (taken over after it expired, or the result is stored by another); the task may then stop, as
    its result would be ignored. A store that is down is retried at the next renewal (logged); the lease may
    expire meanwhile. Nothing runs until the first renewal is due (a timer, not a task): a task shorter than
    ``lease_s / 3`` costs no renewal at all.
    """

    def __init__(
        self,
        store: StateStore,
        task_id: UUID,
        *,
        worker: str,
        lease_s: float,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        check_lease(lease_s)
        self.store = store
        self.task_id = task_id
        self.worker = worker
        self.lease_s = lease_s
        self.interval_s = lease_s / 3
        self.lost = asyncio.Event()
        self.renewals = 0
        self._on_lost = on_lost
        self._entered = False
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def is_lost(self) -> bool:
        return self.lost.is_set()

    async def __aenter__(self) -> Self:
        if self._entered:
            raise UsageError("a LeaseKeeper is entered once")
        self._entered = True
        self._timer = asyncio.get_running_loop().call_later(self.interval_s, self._begin)
        return self

    def _begin(self) -> None:
        self._timer = None
        self._task = asyncio.create_task(self._renew_until_cancelled(), name=f"lease-{self.task_id}")

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)  # a renewal that lost its cancellation is the last: see the loop

    async def _renew_until_cancelled(self) -> None:
        me = asyncio.current_task()
        while self._task is me:
            try:
                held = await self.store.renew(self.task_id, self.worker, self.lease_s)
            except StoreUnavailable as exc:
                _log.warning("lease_renewal_failed", task_id=str(self.task_id), error=str(exc))
            else:
                if not held:
                    _log.warning("lease_lost", task_id=str(self.task_id), worker=self.worker)
                    self.lost.set()
                    if self._on_lost is not None:
                        self._on_lost()
                    return
                self.renewals += 1
            await asyncio.sleep(self.interval_s)
