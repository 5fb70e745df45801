"""Helpers of the console tests: a console on 127.0.0.1 over a bus and a store, a client that reads its
pages and posts its forms as a browser would, and runs recorded with the store's own API (as the
orchestrator records them)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import aiohttp

from relaybus.messages import ExecutionResult, ExecutionStatus, Usage
from relaybus.state import StateStore, TaskEventKind

TOKEN = "operator-token-0123456789abcdef"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


class Client:
    """GETs pages and POSTs forms to a console at ``base`` (same-origin, as a browser's form would)."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def get(self, path: str) -> tuple[int, str, dict[str, str]]:
        async with self.session.get(self.base + path) as response:
            return response.status, await response.text(), dict(response.headers)

    async def post(
        self, path: str, form: dict[str, str], headers: dict[str, str] | None = None
    ) -> tuple[int, str]:
        sent = {"Origin": self.base, "Sec-Fetch-Site": "same-origin", **(headers or {})}
        async with self.session.post(self.base + path, data=form, headers=sent) as response:
            return response.status, await response.text()


async def record_run(
    store: StateStore,
    run_id: str,
    name: str = "plan",
    *,
    tasks: Sequence[tuple[UUID, str, Sequence[UUID]]] | None = None,
    finish: Sequence[UUID] = (),
    output: object = "done",
    started_at: datetime | None = None,
    worker: str = "host:1",
    trace_id: str | None = None,
) -> list[UUID]:
    """Record a run as the orchestrator does (record_run, then published/started/finished events); every
    task published with ``trace_id``."""
    if tasks is None:
        a, b = uuid4(), uuid4()
        tasks = [(a, "first", ()), (b, "second", (a,))]
    start = started_at or datetime.now(UTC) - timedelta(seconds=30)
    await store.record_run(
        run_id, name, [(t, target, tuple(deps)) for t, target, deps in tasks], started_at=start
    )
    for task_id, _, _ in tasks:
        await store.task_event(run_id, task_id, TaskEventKind.PUBLISHED, start, trace_id=trace_id)
    for n, task_id in enumerate(finish):
        began = start + timedelta(seconds=1 + n)
        await store.task_event(run_id, task_id, TaskEventKind.STARTED, began, worker=worker, attempt=1)
        result = ExecutionResult(
            task_id=task_id,
            status=ExecutionStatus.SUCCESS,
            output=output,
            worker=worker,
            started_at=began,
            finished_at=began + timedelta(seconds=2),
            usage=Usage(prompt_tokens=10, completion_tokens=5, requests=1),
        )
        await store.task_event(
            run_id, task_id, TaskEventKind.FINISHED, began + timedelta(seconds=2), result=result, cost=0.01
        )
    return [t for t, _, _ in tasks]
