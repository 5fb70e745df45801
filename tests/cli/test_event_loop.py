"""The command line runs on uvloop when it is installed (``relaybus[speed]``), unless told otherwise.

``RELAYBUS_EVENT_LOOP``: ``auto`` (the default: uvloop if installed), ``asyncio`` or ``uvloop``. A worker
names its loop in its ``worker_starting`` line.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys

import pytest
import uvloop

from relaybus.cli._common import CliError, event_loop_factory

from .support import run_cli, started_worker


def test_auto_and_uvloop_choose_uvloop_when_it_is_installed() -> None:
    assert event_loop_factory({}) is uvloop.new_event_loop
    assert event_loop_factory({"RELAYBUS_EVENT_LOOP": "auto"}) is uvloop.new_event_loop
    assert event_loop_factory({"RELAYBUS_EVENT_LOOP": " UVLOOP "}) is uvloop.new_event_loop


def test_asyncio_keeps_the_standard_loop() -> None:
    assert event_loop_factory({"RELAYBUS_EVENT_LOOP": "asyncio"}) is None


def test_an_unknown_loop_is_refused_naming_the_choices() -> None:
    with pytest.raises(CliError, match="use auto, asyncio or uvloop"):
        event_loop_factory({"RELAYBUS_EVENT_LOOP": "trio"})


def test_the_command_reports_an_unknown_loop_in_one_line_with_exit_2() -> None:
    proc = run_cli("cancel", "--amqp-url", "memory://", "1" * 32, env={"RELAYBUS_EVENT_LOOP": "trio"})
    assert proc.returncode == 2
    assert "RELAYBUS_EVENT_LOOP='trio' is not an event loop" in proc.stderr


def _worker_loop(env: dict[str, str]) -> str:
    """Start ``relaybus worker`` on ``memory://``, read the loop it names, stop it with SIGTERM."""
    command = ["-m", "relaybus", "--log-format", "json", "worker", "tests.agents.sample_agents:Echo"]
    with started_worker([sys.executable, *command, "--amqp-url", "memory://"], env=env) as (proc, lines):
        (starting,) = [json.loads(line) for line in lines if '"worker_starting"' in line]
        proc.send_signal(signal.SIGTERM)  # after worker_started: its signal handlers are in place
        proc.communicate(timeout=30)
    assert proc.returncode == 0
    return str(starting["event_loop"])


def test_a_worker_runs_on_uvloop_by_default_and_on_asyncio_when_asked() -> None:
    assert _worker_loop({}) == "uvloop"
    assert _worker_loop({"RELAYBUS_EVENT_LOOP": "asyncio"}) == "asyncio"


def test_the_library_itself_never_changes_the_loop_policy() -> None:
    # Only the CLI chooses: importing relaybus leaves an application's loop alone.
    code = (
        "import asyncio, relaybus, relaybus.agents, relaybus.cli\n"
        "print(type(asyncio.new_event_loop()).__module__)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().startswith("asyncio")
    assert asyncio.get_event_loop_policy().__class__.__module__.startswith("asyncio")
