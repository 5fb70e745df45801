"""Which store a state URL names (``--state-url`` / ``RELAYBUS_STATE_URL``), and opening it.

``sqlite:///state.db`` is a path relative to the working directory and ``sqlite:////var/lib/relaybus/state.db``
an absolute one (the SQLAlchemy convention: what follows the third slash is the path);
``postgresql://user:password@host:5432/database`` (or ``postgres://``) is a PostgreSQL database. The
database drivers are imported only when a store of their kind is made.
"""

from __future__ import annotations

import importlib
from datetime import timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

from relaybus.exceptions import ConfigError
from relaybus.secrets import mask_url

from .base import DEFAULT_RETENTION, StateStore

__all__ = ["STATE_URL_ENV", "STATE_URL_FORMS", "open_store", "store_from_url"]

STATE_URL_ENV = "RELAYBUS_STATE_URL"
STATE_URL_FORMS = (
    "sqlite:///relative/path/state.db, sqlite:////absolute/path/state.db "
    "or postgresql://user:password@host:5432/database"
)


def store_from_url(url: str, *, retention: timedelta = DEFAULT_RETENTION, **options: Any) -> StateStore:
    """The (unopened) store ``url`` names; ``options`` go to its constructor (``busy_timeout_s`` for SQLite;
    ``max_connections``, ``connect_timeout_s`` for PostgreSQL). ConfigError naming the accepted forms."""
    scheme, sep, rest = url.strip().partition("://")
    scheme = scheme.lower()
    if sep and scheme == "sqlite":
        if not rest.startswith("/") or len(rest) == 1:
            raise ConfigError(
                f"SQLite state URL {mask_url(url)!r} has no path: write sqlite:///state.db (relative) or "
                "sqlite:////var/lib/relaybus/state.db (absolute)"
            )
        path = unquote(rest[1:])
        store: StateStore = _driver("sqlite", "aiosqlite").SqliteStore(path, retention=retention, **options)
        return store
    if sep and scheme in ("postgresql", "postgres"):
        if not urlsplit(url).hostname and "host=" not in url:
            raise ConfigError(f"PostgreSQL state URL {mask_url(url)!r} names no host: {STATE_URL_FORMS}")
        store = _driver("postgres", "asyncpg").PostgresStore(url.strip(), retention=retention, **options)
        return store
    raise ConfigError(f"state URL {mask_url(url)!r} is not one relaybus knows: use {STATE_URL_FORMS}")


def _driver(module: str, package: str) -> Any:
    try:
        return importlib.import_module(f".{module}", __package__)
    except ModuleNotFoundError as exc:
        if exc.name != package:
            raise
        raise ConfigError(
            f"this state URL needs the {package} package: pip install 'relaybus[state]'"
        ) from None


async def open_store(url: str, *, retention: timedelta = DEFAULT_RETENTION, **options: Any) -> StateStore:
    """:func:`store_from_url`, opened (schema created or migrated): close it when done, or prefer
    ``async with store_from_url(url) as store:``."""
    store = store_from_url(url, retention=retention, **options)
    await store.open()
    return store
