"""docs/wire.md says what the code does: its tables are the generated ones, every field has a meaning, and
the names, limits and error types in its prose are the code's."""

from __future__ import annotations

from pathlib import Path

import pytest

from relaybus.agents.delegation import DEFAULT_MAX_DEPTH
from relaybus.bus import base
from relaybus.bus.codec import (
    CONTROL_MAX_BODY_BYTES,
    DEFAULT_MAX_BODY_BYTES,
    HEARTBEAT_ROUTING_KEY,
    PING_ROUTING_KEY,
    STOPPED_ROUTING_KEY,
)
from relaybus.bus.replies import DIRECT_REPLY_TO, REPLY_QUEUE_PREFIX
from relaybus.bus.rpc import DEFAULT_REPLY_EXPIRES_S
from relaybus.contract.schemas import model_schemas
from relaybus.contract.tables import FIELD_NOTES, replace_tables, tables

WIRE = Path(__file__).resolve().parents[2] / "docs" / "wire.md"


def test_the_tables_of_wire_md_are_the_generated_ones() -> None:
    text = WIRE.read_text()
    assert replace_tables(text) == text, "regenerate the tables: see relaybus.contract.tables.replace_tables"
    for name in tables():
        assert f"<!-- table: {name} -->" in text, f"docs/wire.md shows no {name} table"


def test_a_changed_table_is_caught() -> None:
    text = WIRE.read_text().replace("| `prompt` | string |", "| `prompt` | integer |")
    assert replace_tables(text) != text


def test_every_field_on_the_wire_has_a_meaning_and_no_meaning_is_stale() -> None:
    schemas = model_schemas()
    for model, notes in FIELD_NOTES.items():
        assert set(notes) == set(schemas[model]["properties"]), model


@pytest.mark.parametrize(
    "name",
    [
        base.EXCHANGE,
        base.DEAD_LETTER_EXCHANGE,
        base.DEAD_LETTER_QUEUE,
        base.SCHEMA_HEADER,
        base.ERROR_HEADER,
        base.DEADLINE_HEADER,
        base.DELEGATION_HEADER,
        base.TRACEPARENT_HEADER,
        base.ORIGINAL_QUEUE_HEADER,
        base.ORIGINAL_ROUTING_KEY_HEADER,
        base.ORIGINAL_EXCHANGE_HEADER,
        base.CANCEL_ROUTING_KEY,
        HEARTBEAT_ROUTING_KEY,
        STOPPED_ROUTING_KEY,
        PING_ROUTING_KEY,
        DIRECT_REPLY_TO,
        REPLY_QUEUE_PREFIX,
        base.agent_queue_name("<name>"),
        base.task_routing_key("<topic>"),
        base.agent_routing_key("<name>"),
        "InvalidTask",
        "InvalidResult",
        "WrongAgent",
        "InvalidDeadline",
        "DeadlineExceeded",
        "TaskIdReused",
        "DelegationError",
    ],
)
def test_every_name_of_the_wire_is_in_wire_md(name: str) -> None:
    assert name in WIRE.read_text()


def test_the_limits_in_the_prose_are_the_codes() -> None:
    text = WIRE.read_text()
    assert DEFAULT_MAX_BODY_BYTES == 1024 * 1024
    assert "1 MiB for tasks, results and events" in text
    assert CONTROL_MAX_BODY_BYTES == 64 * 1024
    assert "64 KiB for cancels and heartbeats" in text
    assert f"deeper than {DEFAULT_MAX_DEPTH}" in text
    assert f"x-expires={round(DEFAULT_REPLY_EXPIRES_S * 1000)}" in text
