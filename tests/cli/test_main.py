"""The top-level command line: bad settings are one clear line and exit 2, never a traceback."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from pathlib import Path

import pytest

import relaybus as relaybus_package
from relaybus.cli import build_parser
from relaybus.cli._common import non_negative_float, positive_float, positive_int
from relaybus.cli._options import sub_parsers

from .support import run_cli, usage_error


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


# --- options every command shares --------------------------------------------------------------------------


def test_version_prints_the_packages_version() -> None:
    proc = relaybus("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"relaybus {relaybus_package.__version__}"


LONELY_PLAN = "name: lonely\ntasks:\n  - {key: only, topic: no.one}\n"


@pytest.mark.parametrize(
    "where",
    ["before", "after"],
)
def test_log_options_are_taken_before_or_after_the_sub_command(tmp_path: Path, where: str) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(LONELY_PLAN)
    options = ["--log-level", "info", "--log-format", "json"]
    command = ["run", str(plan), "--amqp-url", "memory://", "--no-progress"]
    argv = [*options, *command] if where == "before" else [*command, *options]
    proc = relaybus(*argv)
    assert proc.returncode == 1, proc.stderr  # the plan's one task has no agent: REJECTED
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    assert "plan_started" in {e["event"] for e in events}
    assert all(e["level"] in ("info", "warning", "error") for e in events)  # INFO, not DEBUG


def test_log_json_still_means_json_log_lines(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(LONELY_PLAN)
    proc = relaybus(
        "run", str(plan), "--amqp-url", "memory://", "--no-progress", "--log-level", "INFO", "--log-json"
    )
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines
    assert all(json.loads(line)["event"] for line in lines)


def test_a_one_shot_command_logs_no_info_lines_by_default(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(LONELY_PLAN)
    quiet = relaybus("run", str(plan), "--amqp-url", "memory://", "--no-progress")
    assert quiet.returncode == 1
    assert quiet.stderr == ""  # only the table and the summary, on stdout
    assert "1 task: 1 rejected" in quiet.stdout


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["submit", "--topic", "a.b", "--bogus"], "submit"),
        (["--log-level", "DEBUG", "dlq", "list", "--bogus", "1"], "dlq list"),
        (["dlq", "replay"], "dlq replay"),  # flags that must go together: checked by the command
        (["dlq", "purge"], "dlq purge"),
        (["run"], "run"),
    ],
)
def test_a_sub_command_error_shows_that_sub_commands_usage(argv: list[str], command: str) -> None:
    proc = relaybus(*argv, RELAYBUS_AMQP_URL="amqp://guest:guest@127.0.0.1:1/")
    usage_error(proc, command)


def _every_parser() -> list[argparse.ArgumentParser]:
    parser = build_parser()
    return [parser, *sub_parsers(parser)]


def test_every_option_with_a_default_says_it_in_the_help() -> None:
    missing = []
    for parser in _every_parser():
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.option_strings or action.default in (None, False, "", argparse.SUPPRESS):
                continue
            text = formatter._expand_help(action) if action.help else ""
            if "default" not in text:
                missing.append(f"{parser.prog} {action.option_strings[0]}")
    assert not missing


def test_options_of_the_same_kind_have_the_same_placeholder() -> None:
    wrong = []
    for parser in _every_parser():
        for action in parser._actions:
            expected = {positive_int: "N", positive_float: "SECONDS", non_negative_float: "SECONDS"}.get(
                action.type  # type: ignore[call-overload]
            )
            if expected == "N" and action.metavar == "BYTES":  # a size says its unit
                continue
            if action.option_strings and expected and action.metavar != expected:
                wrong.append(f"{parser.prog} {action.option_strings[0]} {action.metavar}")
    assert not wrong


def test_the_help_shows_defaults_and_never_the_password_of_the_environments_url() -> None:
    proc = relaybus("worker", "--help", RELAYBUS_AMQP_URL="amqp://me:hunter2@rabbit:5672/")
    assert proc.returncode == 0
    assert "hunter2" not in proc.stdout
    assert "(default 30)" in proc.stdout  # --grace
    assert "(30) (default" not in proc.stdout


def test_the_dlq_sub_commands_are_described() -> None:
    top = relaybus("dlq", "--help")
    for action, words in (("list", "reasons"), ("replay", "back"), ("purge", "drop")):
        assert re.search(rf"^\s+{action}\s+.*{words}", top.stdout, re.MULTILINE), top.stdout
        own = relaybus("dlq", action, "--help")
        description = own.stdout.split("\n\n")[1]
        assert not description.startswith("options:"), own.stdout


@pytest.mark.parametrize("command", ["worker", "submit", "cancel", "agents", "run", "dlq list"])
def test_commands_that_need_rabbitmq_do_not_suggest_memory_urls(command: str) -> None:
    proc = relaybus(*command.split(), "--help")
    assert proc.returncode == 0
    assert "memory://" not in proc.stdout


def test_a_url_that_is_not_rabbitmqs_says_what_to_give() -> None:
    proc = relaybus("agents", "--amqp-url", "http://me:hunter2@rabbit/")
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert "amqp://user:password@host:5672/vhost" in line
    assert "memory://" not in line
    assert "hunter2" not in line
