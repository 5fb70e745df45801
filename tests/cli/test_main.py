"""The top-level command line: bad settings are one clear line and exit 2, never a traceback."""

from __future__ import annotations

import subprocess

import pytest

from .support import run_cli


def relaybus(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, env=env)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    for word in words:
        assert word in last, last


def test_unknown_log_level_names_the_choices() -> None:
    assert_one_line_error(relaybus("--log-level", "bogus", "agents"), "--log-level", "DEBUG", "ERROR")


def test_bad_echo_latency_in_the_environment() -> None:
    proc = relaybus("demo", "--no-progress", RELAYBUS_ECHO_LATENCY_S="abc")
    assert_one_line_error(proc, "RELAYBUS_ECHO_LATENCY_S", "'abc'")


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"RELAYBUS_LLM_PROVIDER": "bogus"}, ("unknown LLM provider 'bogus'",)),
        ({"RELAYBUS_LLM_PROVIDER": "openai", "OPENAI_API_KEY": ""}, ("OPENAI_API_KEY",)),
        ({"RELAYBUS_MAX_CONCURRENCY": "abc"}, ("RELAYBUS_MAX_CONCURRENCY",)),
    ],
)
def test_worker_refuses_to_start_with_a_bad_llm_setting(env: dict[str, str], words: tuple[str, ...]) -> None:
    # The broker URL points nowhere: the setting must be refused before any connection is tried.
    proc = relaybus("worker", "examples.agents:Writer", "--amqp-url", "amqp://127.0.0.1:1/", **env)
    assert_one_line_error(proc, *words)
