"""``open_bus``: the one place that reads ``RELAYBUS_SIGNING_KEY``: with it every command signs and checks."""

from __future__ import annotations

import pytest

from relaybus.bus.memory import MemoryBus
from relaybus.bus.signing import SignedBus
from relaybus.cli._common import CliError, open_bus

KEY = "a signing key of enough bytes for HMAC"


async def test_without_a_key_the_bus_is_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RELAYBUS_SIGNING_KEY", raising=False)
    bus = await open_bus("memory://")
    try:
        assert isinstance(bus, MemoryBus)
    finally:
        await bus.close()


async def test_with_a_key_the_bus_signs_and_checks_and_the_key_never_shows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RELAYBUS_SIGNING_KEY", KEY)
    bus = await open_bus("memory://")
    try:
        assert isinstance(bus, SignedBus)
        assert bus.verify
        assert KEY not in repr(bus)
    finally:
        await bus.close()


async def test_a_short_key_is_a_usage_error_before_connecting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYBUS_SIGNING_KEY", "short")
    with pytest.raises(CliError, match="fewer than 16") as refused:
        await open_bus("memory://")
    assert refused.value.code == 2
    assert "short" not in refused.value.message  # the key itself is never echoed
