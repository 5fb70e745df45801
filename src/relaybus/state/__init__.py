"""State that outlives processes: claims and results (exactly-once effects), journals, run history.

``store_from_url(url)`` gives a :class:`SqliteStore` (one host) or a :class:`PostgresStore` (every host);
both are :class:`StateStore` s and pass one contract suite. The store classes, and with them ``aiosqlite`` and
``asyncpg``, are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from relaybus._lazy import lazy_exports

from .base import DEFAULT_RETENTION, StateStore, task_digest
from .errors import SchemaTooNew, StateError, StoreUnavailable
from .leases import LeaseKeeper, claim_or_wait
from .migrations import LATEST_VERSION
from .records import (
    Claim,
    ClaimOutcome,
    Completion,
    Journal,
    JournalEntry,
    PlannedTask,
    PruneReport,
    RunDetail,
    RunSummary,
    RunTask,
    TaskEvent,
    TaskEventKind,
    TaskState,
    TaskUpdate,
)
from .url import STATE_URL_ENV, STATE_URL_FORMS, open_store, store_from_url

if TYPE_CHECKING:
    from .postgres import PostgresStore
    from .sqlite import SqliteStore

__all__ = [
    "DEFAULT_RETENTION",
    "LATEST_VERSION",
    "STATE_URL_ENV",
    "STATE_URL_FORMS",
    "Claim",
    "ClaimOutcome",
    "Completion",
    "Journal",
    "JournalEntry",
    "LeaseKeeper",
    "PlannedTask",
    "PostgresStore",
    "PruneReport",
    "RunDetail",
    "RunSummary",
    "RunTask",
    "SchemaTooNew",
    "SqliteStore",
    "StateError",
    "StateStore",
    "StoreUnavailable",
    "TaskEvent",
    "TaskEventKind",
    "TaskState",
    "TaskUpdate",
    "claim_or_wait",
    "open_store",
    "store_from_url",
    "task_digest",
]

__getattr__, __dir__ = lazy_exports(globals(), {"PostgresStore": ".postgres", "SqliteStore": ".sqlite"})
