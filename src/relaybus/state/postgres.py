"""``PostgresStore``: the state store in a PostgreSQL database, shared by every host (``asyncpg``).

One connection pool per store (per process); each operation takes a connection for its few statements.
Transactions are READ COMMITTED with ``SELECT ... FOR UPDATE`` on the one row they decide on, so claims of
different tasks never wait for each other and claims of the same task are decided one after another. Lease
times are the database server's clock, so hosts with skewed clocks still agree on when a lease ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from typing import Any

import asyncpg
from asyncpg import Record
from asyncpg.pool import PoolConnectionProxy

from relaybus.exceptions import ConfigError
from relaybus.secrets import Secret, mask_secrets, mask_url

from .base import DEFAULT_RETENTION
from .errors import StoreUnavailable
from .session import Row, Session, postgres_sql
from .sql import SqlStore

__all__ = ["PostgresStore"]

_MIGRATION_LOCK = 0x72656C61796275  # pg_advisory_xact_lock key of relaybus migrations ("relaybu")
_LOST = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.InternalClientError,  # a connection the server dropped mid-protocol
)
# A batch is one array parameter per column, read with unnest: one statement (prepared once) for any size.
_FIRST_CLAIMS = """
    INSERT INTO relaybus_claims (task_id, digest, holder, attempt, expires_at, updated_at)
    SELECT c.task_id, c.digest, c.holder, 1, {now} + c.lease, {now}
    FROM unnest(?::text[], ?::text[], ?::text[], ?::double precision[]) AS c(task_id, digest, holder, lease)
    WHERE NOT EXISTS (SELECT 1 FROM relaybus_results r WHERE r.task_id = c.task_id)
    ON CONFLICT (task_id) DO NOTHING
    RETURNING task_id, expires_at"""
# complete() of a batch in one statement (one round trip, its own transaction): lock the claims, store the
# results unless some are, end the claims whose result was stored; each claim's old holder tells whether the
# lease was still its worker's.
_STORE_RESULTS = """
    WITH given AS (SELECT * FROM unnest(?::text[], ?::text[], ?::text[]) AS g(task_id, result, worker)),
    claim AS (
        SELECT task_id, holder FROM relaybus_claims WHERE task_id IN (SELECT task_id FROM given)
        ORDER BY task_id FOR UPDATE),
    stored AS (
        INSERT INTO relaybus_results (task_id, result, stored_at)
        SELECT g.task_id, g.result, {now} FROM given g JOIN claim c ON c.task_id = g.task_id
        ON CONFLICT (task_id) DO NOTHING RETURNING task_id),
    ended AS (
        UPDATE relaybus_claims SET holder = NULL, updated_at = {now}
        WHERE task_id IN (SELECT task_id FROM stored) RETURNING task_id)
    SELECT c.task_id, e.task_id IS NOT NULL AS stored, c.holder IS DISTINCT FROM g.worker AS lease_lost
    FROM claim c JOIN given g ON g.task_id = c.task_id LEFT JOIN ended e ON e.task_id = c.task_id"""
# The same for one id (a quiet worker): simpler for the planner than the batch's unnest and joins.
_STORE_ONE_RESULT = """
    WITH claim AS (SELECT holder FROM relaybus_claims WHERE task_id = $1 FOR UPDATE),
    stored AS (
        INSERT INTO relaybus_results (task_id, result, stored_at)
        SELECT $1::text, $2::text, {now} FROM claim
        ON CONFLICT (task_id) DO NOTHING RETURNING task_id),
    ended AS (
        UPDATE relaybus_claims SET holder = NULL, updated_at = {now}
        WHERE task_id = $1 AND EXISTS (SELECT 1 FROM stored) RETURNING task_id)
    SELECT $1::text AS task_id, EXISTS (SELECT 1 FROM ended) AS stored,
           (SELECT holder FROM claim) IS DISTINCT FROM $3::text AS lease_lost
    FROM claim"""
_FIX = "start PostgreSQL there, or point --state-url / RELAYBUS_STATE_URL at one that runs"


async def _keep_session(connection: asyncpg.Connection) -> None:
    """The pool's reset between uses: nothing beyond asyncpg's own rollback of an unfinished transaction.

    The default reset (``RESET ALL``, ``UNLISTEN *``, ...) is one more round trip per operation, for session
    state this store never sets (it takes only transaction-scoped locks).
    """


def _columns(rows: Sequence[Sequence[Any]], count: int) -> list[list[Any]]:
    """The first ``count`` columns of ``rows``, each as one list: the arrays that unnest() reads."""
    return [[row[n] for row in rows] for n in range(count)]


class _PostgresSession:
    def __init__(self, connection: PoolConnectionProxy[Record]) -> None:
        self._connection = connection

    async def fetchall(self, sql: str, *args: Any) -> list[Row]:
        return [dict(record) for record in await self._connection.fetch(postgres_sql(sql), *args)]

    async def fetchone(self, sql: str, *args: Any) -> Row | None:
        record = await self._connection.fetchrow(postgres_sql(sql), *args)
        return None if record is None else dict(record)

    async def execute(self, sql: str, *args: Any) -> int:
        status: str = await self._connection.execute(postgres_sql(sql), *args)
        count = status.rsplit(" ", 1)[-1]  # "UPDATE 1", "INSERT 0 1", "CREATE TABLE"
        return int(count) if count.isdigit() else 0

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._connection.executemany(postgres_sql(sql), rows)


class PostgresStore(SqlStore):
    """A :class:`StateStore` in the PostgreSQL database of ``url`` (``postgresql://user:password@host/db``;
    the database must exist, the schema is created in it). The password is kept out of reprs and messages."""

    def __init__(
        self,
        url: str,
        *,
        retention: timedelta = DEFAULT_RETENTION,
        min_connections: int = 1,
        max_connections: int = 10,
        connect_timeout_s: float = 10.0,
    ) -> None:
        super().__init__(retention=retention)
        if not 1 <= min_connections <= max_connections:
            raise ConfigError(
                f"need 1 <= min_connections <= max_connections (got {min_connections}, {max_connections})"
            )
        if connect_timeout_s <= 0:
            raise ConfigError(f"connect_timeout_s must be > 0 (got {connect_timeout_s})")
        self._dsn = Secret(url)
        self.url = mask_url(url)
        self.min_connections = min_connections
        self.max_connections = max_connections
        self.connect_timeout_s = connect_timeout_s
        self._pool: asyncpg.Pool | None = None

    async def _connect(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn.reveal(),
                min_size=self.min_connections,
                max_size=self.max_connections,
                timeout=self.connect_timeout_s,
                reset=_keep_session,
            )
        except Exception as exc:
            raise StoreUnavailable(self._why_not(exc)) from None

    def _why_not(self, exc: BaseException) -> str:
        detail = mask_secrets(f"{type(exc).__name__}: {exc}"[:300], self._dsn)
        where = f"the PostgreSQL state store at {self.url}"
        if isinstance(exc, TimeoutError):
            return f"{where} did not answer within {self.connect_timeout_s:g} s: {_FIX}"
        if isinstance(exc, asyncpg.InvalidCatalogNameError):
            return (
                f"{where} cannot be used: its database does not exist ({detail}); create it (createdb NAME)"
            )
        if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError | asyncpg.InvalidPasswordError):
            return f"{where} refused the login ({detail}): check the user and password of the URL"
        if isinstance(exc, _LOST):
            return f"{where} does not answer ({detail}): {_FIX}"
        return f"{where} cannot be used ({detail}): check the URL, or point --state-url elsewhere"

    async def _disconnect(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), timeout=10)
            except TimeoutError:
                pool.terminate()

    @asynccontextmanager
    async def _transaction(self, *, transaction: bool, lock: bool = False) -> AsyncIterator[Session]:
        pool = self._pool
        if pool is None:
            raise StoreUnavailable(f"the PostgreSQL state store at {self.url} was closed")
        try:
            connection = await pool.acquire()
        except Exception as exc:  # a new connection refused, for whatever reason: the store is not usable now
            raise StoreUnavailable(self._why_not(exc)) from None
        try:
            if not transaction:
                yield _PostgresSession(connection)
                return
            async with connection.transaction():
                if lock:
                    await connection.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
                yield _PostgresSession(connection)
        except _LOST as exc:
            raise StoreUnavailable(self._why_not(exc)) from None
        finally:
            await pool.release(connection)

    async def _first_claims(self, session: Session, rows: list[tuple[str, str, str, float]]) -> list[Row]:
        return await session.fetchall(_FIRST_CLAIMS, *_columns(rows, 4))

    async def _store_results(self, rows: list[tuple[str, str, str]]) -> list[Row]:
        async with self._use() as session:
            if len(rows) == 1:  # written with $n: reused
                return await session.fetchall(_STORE_ONE_RESULT, *rows[0])
            return await session.fetchall(_STORE_RESULTS, *_columns(rows, 3))

    def _session(self, *, transaction: bool) -> AbstractAsyncContextManager[Session]:
        return self._transaction(transaction=transaction)

    def _migration_session(self) -> AbstractAsyncContextManager[Session]:
        # Several processes starting at once: the first migrates, the others wait and then find it done.
        return self._transaction(transaction=True, lock=True)
