"""``SqliteStore``: the state store in one SQLite file, for one host (every process on it may share it).

One connection per store (``aiosqlite``: a thread of its own), used by one coroutine at a time; write
transactions are ``BEGIN IMMEDIATE``, which takes the file's write lock at once, so claims from several
processes are decided one after another. WAL mode lets readers in other processes go on meanwhile;
``synchronous=NORMAL`` keeps every committed transaction through a process crash (a power cut may lose the
last ones, never corrupt the file). A writer waits up to ``busy_timeout_s`` for the lock, then
:class:`StoreUnavailable` is raised.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from typing import Any, cast

import aiosqlite

from relaybus.exceptions import ConfigError

from .base import DEFAULT_RETENTION
from .errors import StoreUnavailable
from .session import Row, Session, sqlite_sql
from .sql import _END_CLAIM, _STORE_RESULT, SqlStore, never_claimed

__all__ = ["SqliteStore"]

# A batch is one JSON array parameter, read with json_each: one statement text whatever the batch's size.
_FIRST_CLAIMS = """
    INSERT INTO relaybus_claims (task_id, digest, holder, attempt, expires_at, updated_at)
    SELECT c.task_id, c.digest, c.holder, 1, {now} + c.lease, {now} FROM (
        SELECT json_extract(value, '$[0]') AS task_id, json_extract(value, '$[1]') AS digest,
               json_extract(value, '$[2]') AS holder, json_extract(value, '$[3]') AS lease
        FROM json_each(?)) AS c
    WHERE NOT EXISTS (SELECT 1 FROM relaybus_results r WHERE r.task_id = c.task_id)
    ON CONFLICT (task_id) DO NOTHING
    RETURNING task_id, expires_at"""
_CLAIMS_OF = """
    SELECT task_id, holder FROM relaybus_claims
    WHERE task_id IN (SELECT json_extract(value, '$[0]') FROM json_each(?))"""
_STORE_RESULTS = """
    INSERT INTO relaybus_results (task_id, result, stored_at)
    SELECT g.task_id, g.result, {now} FROM (
        SELECT json_extract(value, '$[0]') AS task_id, json_extract(value, '$[1]') AS result
        FROM json_each(?)) AS g
    WHERE EXISTS (SELECT 1 FROM relaybus_claims c WHERE c.task_id = g.task_id)
    ON CONFLICT (task_id) DO NOTHING
    RETURNING task_id"""
_END_CLAIMS = """
    UPDATE relaybus_claims SET holder = NULL, updated_at = {now}
    WHERE task_id IN (SELECT value FROM json_each(?))"""

# sqlite3 reports a locked, busy, unwritable or vanished file as OperationalError, as it does bad SQL; these
# words tell the first kind (the store is not usable now) from the second (a bug, left to propagate).
_UNAVAILABLE_WORDS = ("locked", "busy", "disk", "unable to open", "readonly", "read-only")


def _as_dict(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> Row:
    return {column[0]: value for column, value in zip(cursor.description, row, strict=True)}


class _SqliteSession:
    """Each call is one trip to the connection's thread (``execute_fetchall``, rows made into dicts there)."""

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._connection = connection

    async def fetchall(self, sql: str, *args: Any) -> list[Row]:
        # All rows: a RETURNING statement is done only once read to the end.
        rows = await self._connection.execute_fetchall(sqlite_sql(sql), args)
        return cast(list[Row], list(rows))  # made dicts by _as_dict, the connection's row factory

    async def fetchone(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetchall(sql, *args)
        return rows[0] if rows else None

    async def execute(self, sql: str, *args: Any) -> int:
        cursor = await self._connection.execute(sqlite_sql(sql), args)
        return cursor.rowcount

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._connection.executemany(sqlite_sql(sql), rows)


class SqliteStore(SqlStore):
    """A :class:`StateStore` in the SQLite file ``path`` (created with its schema if missing; its directory
    must exist). ``":memory:"`` is a store private to this object, for tests."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        retention: timedelta = DEFAULT_RETENTION,
        busy_timeout_s: float = 30.0,
    ) -> None:
        super().__init__(retention=retention)
        if busy_timeout_s <= 0:
            raise ConfigError(f"busy_timeout_s must be > 0 (got {busy_timeout_s})")
        self.path = os.fspath(path)
        if not self.path:
            raise ConfigError("a SQLite state store needs a file path, e.g. sqlite:///state.db")
        self.url = f"sqlite:///{self.path}"
        self._directory = os.path.dirname(os.path.abspath(self.path))
        self.busy_timeout_s = busy_timeout_s
        self._connection: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    def _can_open(self) -> None:
        sqlite3.connect(self.path, timeout=self.busy_timeout_s).close()

    async def _connect(self) -> None:
        try:
            # Tried first without aiosqlite: its thread, when the file cannot be opened, would still be
            # finishing after the caller's event loop may have closed.
            if self.path != ":memory:":
                await asyncio.to_thread(self._can_open)
            connection = await aiosqlite.connect(self.path, isolation_level=None, timeout=self.busy_timeout_s)
        except sqlite3.Error as exc:
            raise StoreUnavailable(
                f"cannot open the SQLite state store at {self.url} ({exc}): make sure the directory "
                f"{self._directory} exists and this user may write there, or give --state-url / "
                "RELAYBUS_STATE_URL another path"
            ) from exc
        try:
            await connection.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            await connection.execute("PRAGMA journal_mode = WAL")
            await connection.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            await connection.close()
            raise self._unavailable(exc) from exc
        connection.row_factory = _as_dict  # type: ignore[assignment]  # typed as a class; any callable works
        self._connection = connection

    async def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()

    def _unavailable(self, exc: sqlite3.Error) -> StoreUnavailable:
        return StoreUnavailable(
            f"the SQLite state store at {self.url} cannot be used now ({exc}): another process may hold its "
            f"write lock for longer than {self.busy_timeout_s:g} s, or the file is unreadable or read-only"
        )

    @asynccontextmanager
    async def _transaction(self, *, transaction: bool) -> AsyncIterator[Session]:
        async with self._lock:
            connection = self._connection
            if connection is None:
                raise StoreUnavailable(f"the SQLite state store at {self.url} was closed")
            try:
                if not transaction:
                    yield _SqliteSession(connection)
                    return
                try:
                    await connection.execute("BEGIN IMMEDIATE")
                    yield _SqliteSession(connection)
                except BaseException:
                    # Shielded, and queued behind whatever the thread still runs for a cancelled caller
                    # (BEGIN included): the next caller finds the connection out of any transaction.
                    await asyncio.shield(connection.rollback())
                    raise
                await connection.commit()
            except sqlite3.OperationalError as exc:
                if any(word in str(exc).lower() for word in _UNAVAILABLE_WORDS):
                    raise self._unavailable(exc) from exc
                raise

    async def _first_claims(self, session: Session, rows: list[tuple[str, str, str, float]]) -> list[Row]:
        return await session.fetchall(_FIRST_CLAIMS, json.dumps(rows))

    async def _store_results(self, rows: list[tuple[str, str, str]]) -> list[Row]:
        if len(rows) == 1:  # alone (a quiet worker): in the fewest statements
            return await self._store_result(*rows[0])
        batch = json.dumps(rows)
        async with self._use(transaction=True) as session:  # BEGIN IMMEDIATE: the claims are ours
            claims = await session.fetchall(_CLAIMS_OF, batch)
            stored = {row["task_id"] for row in await session.fetchall(_STORE_RESULTS, batch)}
            if stored:
                await session.execute(_END_CLAIMS, json.dumps(list(stored)))
        workers = {task_id: worker for task_id, _, worker in rows}
        return [
            {
                "task_id": claim["task_id"],
                "stored": claim["task_id"] in stored,
                "lease_lost": claim["holder"] != workers[claim["task_id"]],
            }
            for claim in claims
        ]

    async def _store_result(self, task_id: str, text: str, worker: str) -> list[Row]:
        async with self._use(transaction=True) as session:
            if await session.execute(_STORE_RESULT, task_id, text):
                if await session.execute(f"{_END_CLAIM} AND holder = ?", task_id, worker):
                    return [{"task_id": task_id, "stored": True, "lease_lost": False}]
                if await session.execute(_END_CLAIM, task_id):
                    return [{"task_id": task_id, "stored": True, "lease_lost": True}]
                raise never_claimed(task_id)  # the transaction, and the result stored in it, rolls back
            if await session.fetchone("SELECT 1 FROM relaybus_claims WHERE task_id = ?", task_id):
                return [{"task_id": task_id, "stored": False, "lease_lost": False}]
        return []

    def _session(self, *, transaction: bool) -> AbstractAsyncContextManager[Session]:
        return self._transaction(transaction=transaction)

    def _migration_session(self) -> AbstractAsyncContextManager[Session]:
        return self._transaction(transaction=True)  # BEGIN IMMEDIATE already excludes every other writer
