"""The small interface through which the SQL store talks to a database; SQLite and PostgreSQL implement it.

Statements are written once with ``?`` placeholders and two markers each database fills in its own way:
``{now}`` (the database clock as Unix seconds) and ``{for_update}`` (the row lock PostgreSQL needs inside a
transaction; SQLite's ``BEGIN IMMEDIATE`` already holds the whole database).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any, Protocol

__all__ = ["Row", "Session", "postgres_sql", "sqlite_sql"]

Row = dict[str, Any]


class Session(Protocol):
    """One connection, inside a transaction or in autocommit, as the store's ``_session`` yields it."""

    async def fetchone(self, sql: str, *args: Any) -> Row | None: ...

    async def fetchall(self, sql: str, *args: Any) -> list[Row]: ...

    async def execute(self, sql: str, *args: Any) -> int:
        """Run a statement; the number of rows it changed."""

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...


_SQLITE_NOW = "((julianday('now') - 2440587.5) * 86400.0)"
_POSTGRES_NOW = "(extract(epoch from clock_timestamp())::double precision)"
_PLACEHOLDER = re.compile(r"\?")


@functools.lru_cache(maxsize=256)
def sqlite_sql(sql: str) -> str:
    return sql.replace("{now}", _SQLITE_NOW).replace("{for_update}", "")


@functools.lru_cache(maxsize=256)
def postgres_sql(sql: str) -> str:
    """``sql`` with ``$1, $2, ...`` for its ``?`` (no statement here has a ``?`` inside a literal)."""
    sql = sql.replace("{now}", _POSTGRES_NOW).replace("{for_update}", "FOR UPDATE")
    counter = iter(range(1, 10_000))
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)
