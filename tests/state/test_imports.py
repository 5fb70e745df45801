"""relaybus.state exports its names, and loads a database driver only when a store of its kind is made."""

from __future__ import annotations

import json
import subprocess
import sys

import relaybus
import relaybus.state


def test_every_exported_name_imports() -> None:
    missing = [name for name in relaybus.state.__all__ if getattr(relaybus.state, name, None) is None]
    assert not missing
    assert relaybus.SqliteStore is relaybus.state.SqliteStore
    assert relaybus.PostgresStore is relaybus.state.PostgresStore
    assert relaybus.StateStore is relaybus.state.StateStore
    assert relaybus.store_from_url is relaybus.state.store_from_url


def test_both_stores_are_state_stores() -> None:
    assert isinstance(relaybus.state.SqliteStore(":memory:"), relaybus.state.StateStore)
    assert isinstance(relaybus.state.PostgresStore("postgresql://u@h/db"), relaybus.state.StateStore)


def _loaded_after(code: str) -> list[str]:
    """The drivers a fresh interpreter has loaded after running ``code``."""
    report = "import sys, json; print(json.dumps([m for m in ('aiosqlite', 'asyncpg') if m in sys.modules]))"
    probe = f"{code}\n{report}"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])


def test_importing_relaybus_and_relaybus_state_loads_no_driver() -> None:
    assert (
        _loaded_after("import relaybus, relaybus.state; relaybus.StateStore; relaybus.store_from_url") == []
    )


def test_a_store_loads_its_own_driver_only() -> None:
    assert _loaded_after("import relaybus.state as s; s.store_from_url('sqlite:///x.db')") == ["aiosqlite"]
    assert _loaded_after("import relaybus.state as s; s.store_from_url('postgresql://u@h/db')") == ["asyncpg"]
