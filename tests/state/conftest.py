"""The contract fixtures: one ``backend`` (and its open ``store``), run once on SQLite and once on PostgreSQL.

A :class:`Backend` makes stores on one test-private database (a file under ``tmp_path``, or a PostgreSQL
database created for the test and dropped afterwards), runs raw SQL on it with the database's own driver (to
corrupt, backdate or inspect rows the way no store method would), and knows a URL where nothing answers.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from relaybus.state import StateStore, store_from_url
from relaybus.state.session import postgres_sql


class Backend:
    """One kind of store on one private database; see the module docstring."""

    def __init__(self, kind: str, url: str, unreachable_url: str, admin_url: str = "") -> None:
        self.kind = kind
        self.url = url
        self.admin_url = admin_url
        """PostgreSQL: the server's maintenance database, from where the test's database can be altered."""
        self.unreachable_url = unreachable_url
        self._stores: list[StateStore] = []

    def store(self, **options: Any) -> StateStore:
        """A new, unopened store on this database (its own connections); closed at the end of the test."""
        store = store_from_url(self.url, **options)
        self._stores.append(store)
        return store

    async def sql(self, statement: str, *args: Any, admin: bool = False) -> list[dict[str, Any]]:
        """Run one statement (``?`` placeholders) outside every store (PostgreSQL, ``admin``: on the
        maintenance database); its rows."""
        if self.kind == "sqlite":
            return await asyncio.to_thread(self._sqlite, statement, args)
        import asyncpg

        connection = await asyncpg.connect(self.admin_url if admin else self.url)
        try:
            return [dict(row) for row in await connection.fetch(postgres_sql(statement), *args)]
        finally:
            await connection.close()

    def _sqlite(self, statement: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
        connection = sqlite3.connect(self.url.removeprefix("sqlite:///"), timeout=30, isolation_level=None)
        try:
            cursor = connection.execute(statement, args)
            names = [column[0] for column in cursor.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        finally:
            connection.close()

    async def close_all(self) -> None:
        for store in self._stores:
            await store.close()


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "sqlite":
        made = Backend(
            "sqlite", f"sqlite:///{tmp_path / 'state.db'}", f"sqlite:///{tmp_path}/no-such-dir/s.db"
        )
    else:
        url: str = request.getfixturevalue("postgres_database_url")
        unreachable = "postgresql://relaybus:s3cret-Passw0rd@127.0.0.1:1/relaybus"
        made = Backend("postgres", url, unreachable, request.getfixturevalue("postgres_url"))
    try:
        yield made
    finally:
        await made.close_all()


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[StateStore]:
    """An open store of each kind, on a database of its own."""
    async with backend.store() as opened:
        yield opened


@pytest.fixture
def poll() -> Callable[..., Any]:
    """``await poll(check, timeout=10)``: call the async ``check`` until it returns a truthy value."""

    async def until(check: Callable[[], Any], *, timeout: float = 10.0, every: float = 0.05) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            value = await check()
            if value or loop.time() > deadline:
                return value
            await asyncio.sleep(every)

    return until
