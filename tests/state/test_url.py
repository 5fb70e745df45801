"""State URLs: which store each form names, and the errors for the others."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from relaybus.exceptions import ConfigError
from relaybus.state import STATE_URL_ENV, PostgresStore, SqliteStore, open_store, store_from_url


def test_the_environment_variable_is_relaybus_state_url() -> None:
    assert STATE_URL_ENV == "RELAYBUS_STATE_URL"


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///state.db", "state.db"),
        ("sqlite:///data/state.db", "data/state.db"),
        ("sqlite:////var/lib/relaybus/state.db", "/var/lib/relaybus/state.db"),
        ("SQLITE:///my%20state.db", "my state.db"),
        ("sqlite:///:memory:", ":memory:"),
    ],
)
def test_sqlite_urls_name_a_path_after_the_third_slash(url: str, path: str) -> None:
    store = store_from_url(url)
    assert isinstance(store, SqliteStore)
    assert store.path == path
    assert not store.is_open


def test_options_reach_the_store_and_its_retention() -> None:
    from datetime import timedelta

    store = store_from_url("sqlite:///s.db", retention=timedelta(days=2), busy_timeout_s=3)
    assert isinstance(store, SqliteStore)
    assert (store.retention, store.busy_timeout_s) == (timedelta(days=2), 3)
    with pytest.raises(ConfigError, match="retention"):
        store_from_url("sqlite:///s.db", retention=timedelta(days=-1))


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_postgres_urls_keep_the_password_out_of_url_and_repr(scheme: str) -> None:
    store = store_from_url(f"{scheme}://relaybus:hunter2-secret@db.example:5432/relaybus", max_connections=4)
    assert isinstance(store, PostgresStore)
    assert store.url == f"{scheme}://relaybus:***@db.example:5432/relaybus"
    assert "hunter2" not in repr(store)
    assert "hunter2" not in str(vars(store))
    assert store.max_connections == 4


@pytest.mark.parametrize(
    "url",
    ["redis://localhost", "state.db", "sqlite:/state.db", "sqlite://", "sqlite:///", "mysql://u:pw@h/db", ""],
)
def test_other_urls_are_refused_naming_the_forms(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        store_from_url(url)
    assert "sqlite:///" in str(caught.value)
    assert "pw@" not in str(caught.value)


def test_a_postgres_url_names_a_host() -> None:
    with pytest.raises(ConfigError, match="no host"):
        store_from_url("postgresql:///relaybus")


def test_a_missing_driver_says_which_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "relaybus.state.postgres", raising=False)
    monkeypatch.setitem(sys.modules, "asyncpg", None)
    with pytest.raises(ConfigError, match=r"relaybus\[state\]"):
        store_from_url("postgresql://u@localhost/db")


async def test_open_store_returns_an_open_store(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        assert store.is_open
        assert await store.runs() == []
    finally:
        await store.close()
    assert (tmp_path / "state.db").exists()
