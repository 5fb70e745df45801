"""Claims: with a state store, a task id runs ``handle`` once across every worker that shares the store.

:class:`TaskClaims` is what an :class:`~relaybus.agents.AgentWorker` given ``state=store`` does around each
task it would run:

- **Claim first.** The task id is claimed (:meth:`~relaybus.state.StateStore.claim`, with the digest of the
  task's content bound to its publisher, the AMQP ``user_id`` RabbitMQ checked: :func:`claim_digest`) before
  ``handle`` runs. ACQUIRED: the task runs, its lease renewed every ``lease_s / 3``
  seconds (:class:`~relaybus.state.LeaseKeeper`). DONE: the stored result answers the copy, which is acked
  without running. HELD (another worker runs it now): the copy waits, claiming again every ``poll_s``,
  until the holder stores its result (answered from it) or its lease expires (the holder died: this copy
  takes the task over and runs it, attempt + 1). MISMATCH (another body, or another publisher's copy, under
  a known id): refused, so that a stored result goes only to the principal that sent the task, as the
  worker's result cache does.
- **Store the result before the reply.** The result is stored (:meth:`~relaybus.state.StateStore.complete`)
  before it is published, so a crash between the two gives the same result on redelivery, not a re-run; the
  first stored result wins, and it is the one published.
- **A run stopped from outside** (its deadline passed, or a cancel request: TIMEOUT ``DeadlineExceeded``,
  CANCELLED ``Cancelled``) is answered but not stored: the claim is released, so that the same task
  published again (a plan resumed after Ctrl-C) runs, replaying its journal.
- **A lease lost mid-run** (renewals failed for ``lease_s``, and another worker took the task over) stops
  this run: the task goes back to its queue, where its copy is answered from the other run's result.
- **A store that is down** is retried with backoff (doubling to 5 s): a task never runs unclaimed. A result
  that cannot be stored within ``store_retry_s`` is published all the same (logged ``result_not_stored``):
  the caller gets its answer, and a redelivered copy may run again once the lease expires.
- A worker stopping (``stop``) ends the copies waiting on a claim: they return to their queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from dataclasses import dataclass

from relaybus.exceptions import ConfigError
from relaybus.log import FilteringBoundLogger
from relaybus.messages import AgentTask, ExecutionResult
from relaybus.state import ClaimOutcome, LeaseKeeper, StateStore, StoreUnavailable, claim_or_wait, task_digest
from relaybus.state.records import Claim

from .outcomes import is_interrupted
from .running import Run, TaskRunner

__all__ = ["DEFAULT_LEASE_S", "ClaimedRun", "TaskClaims", "claim_digest"]

DEFAULT_LEASE_S = 30.0
_MAX_BACKOFF_S = 5.0


def claim_digest(content: str, publisher: str | None) -> str:
    """The digest a task is claimed with: ``content`` (its :func:`~relaybus.state.task_digest`), bound to
    its ``publisher`` (the AMQP ``user_id``) when the message has one, so that another user's copy of a task
    is MISMATCH, never answered with the result; a task without a publisher (``MemoryBus``) keeps the
    content digest alone."""
    if publisher is None:
        return content
    return hashlib.sha256(f"{content}\0{publisher}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ClaimedRun:
    """What became of a task under a claim.

    ``result``: the result to reply with (this run's, or the one stored by an earlier run: ``ran`` False);
    None: the task goes back to its queue (the run was interrupted by a shutdown, the lease was lost, or
    the worker stopped while it waited). ``refused``: the reason to refuse it (another body, known id).
    """

    result: ExecutionResult | None
    ran: bool = False
    refused: str | None = None
    attempt: int = 0


class TaskClaims:
    """Claims, leases and stored results for one worker (``worker`` is the lease holder's name)."""

    def __init__(
        self,
        store: StateStore,
        *,
        worker: str,
        log: FilteringBoundLogger,
        lease_s: float = DEFAULT_LEASE_S,
        poll_s: float = 0.5,
        store_retry_s: float = 60.0,
    ) -> None:
        if not lease_s > 0 or not poll_s > 0 or store_retry_s < 0:
            raise ConfigError(
                f"lease_s and poll_s must be > 0 and store_retry_s >= 0 (got {lease_s}, {poll_s}, "
                f"{store_retry_s})"
            )
        self.store = store
        self.worker = worker
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.store_retry_s = store_retry_s
        self._log = log
        self._stopping = asyncio.Event()
        self.ran = 0
        """Tasks this worker ran under a claim."""
        self.answered_from_store = 0
        """Copies answered from a stored result without running."""
        self.taken_over = 0
        """Tasks run after another worker's lease expired."""

    def stop(self) -> None:
        """End the waits on claims: those copies go back to their queue."""
        self._stopping.set()

    async def execute(
        self,
        task: AgentTask,
        runner: TaskRunner,
        run: Run,
        *,
        digest: str | None = None,
        publisher: str | None = None,
    ) -> ClaimedRun:
        """Claim ``task`` (sent by ``publisher``), then run it (``runner.run(run)``) or answer it from the
        store; see the module docstring. A lease lost while it runs interrupts the run, which then goes back
        to its queue. ``digest``: ``task_digest(task)`` when the caller has it already (computed here
        otherwise)."""
        digest = claim_digest(task_digest(task) if digest is None else digest, publisher)
        claim = await self._claim(task, digest)
        if claim is None:
            return ClaimedRun(None)
        if claim.outcome is ClaimOutcome.DONE:
            assert claim.result is not None
            self.answered_from_store += 1
            self._log.info("duplicate_task_answered_from_store", task_id=str(task.id))
            return ClaimedRun(claim.result)
        if claim.outcome is ClaimOutcome.MISMATCH:
            return ClaimedRun(
                None,
                refused=(
                    f"task id {task.id} is already stored in {self.store.url} for a task with a different "
                    "body or from another publisher (RabbitMQ user); a task id is used once: give a new task "
                    "a new id (AgentTask() makes one)"
                ),
            )
        if claim.attempt > 1:
            self.taken_over += 1
            self._log.info("task_taken_over", task_id=str(task.id), attempt=claim.attempt)
        lease = LeaseKeeper(
            self.store,
            task.id,
            worker=self.worker,
            lease_s=self.lease_s,
            on_lost=lambda: runner.interrupt(run, "shutdown", "its lease was lost"),
        )
        async with lease:
            outcome = await runner.run(run)
        self.ran += 1
        if outcome is None:
            await self._release(task)
            return ClaimedRun(None, ran=True, attempt=claim.attempt)
        if is_interrupted(outcome):
            await self._release(task)  # not a result of the task's own: a resumed plan may run it again
            return ClaimedRun(outcome, ran=True, attempt=claim.attempt)
        if lease.is_lost:  # finished anyway (the interrupt came too late): the first stored result wins
            self._log.warning("result_after_lease_lost", task_id=str(task.id))
        return ClaimedRun(await self._complete(outcome), ran=True, attempt=claim.attempt)

    async def _claim(self, task: AgentTask, digest: str) -> Claim | None:
        """ACQUIRED, DONE or MISMATCH; None when the worker stopped while this copy waited."""
        try:
            claim = await self.store.claim(task.id, worker=self.worker, lease_s=self.lease_s, digest=digest)
            if claim.outcome is not ClaimOutcome.HELD:
                return claim
            self._log.info("task_waits_on_claim", task_id=str(task.id), holder=claim.holder)
        except StoreUnavailable as exc:
            self._log.warning("state_store_unavailable", task_id=str(task.id), error=str(exc))
        waiting = asyncio.ensure_future(
            claim_or_wait(
                self.store,
                task.id,
                worker=self.worker,
                lease_s=self.lease_s,
                digest=digest,
                poll_s=self.poll_s,
            )
        )
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait((waiting, stopping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not waiting.done():
                waiting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiting
        return waiting.result() if not waiting.cancelled() else None

    async def _complete(self, result: ExecutionResult) -> ExecutionResult:
        """Store ``result`` (retrying a store that is down); the stored one, which may be an earlier run's."""
        deadline = time.monotonic() + self.store_retry_s
        backoff = self.poll_s
        while True:
            try:
                completion = await self.store.complete(result.task_id, self.worker, result)
            except StoreUnavailable as exc:
                if time.monotonic() + backoff > deadline:
                    self._log.error("result_not_stored", task_id=str(result.task_id), error=str(exc))
                    return result
                self._log.warning("result_store_retry", task_id=str(result.task_id), retry_in_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
                continue
            if not completion.stored:
                self._log.info("earlier_result_kept", task_id=str(result.task_id))
            return completion.result

    async def _release(self, task: AgentTask) -> None:
        try:
            await self.store.release(task.id, self.worker)
        except StoreUnavailable as exc:  # the lease expires on its own
            self._log.warning("lease_release_failed", task_id=str(task.id), error=str(exc))
