"""``relaybus worker``: wrong specs give one clear line (exit 2), signals stop it cleanly (exit 0)."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest

from relaybus.cli import main
from relaybus.cli._common import CliError, load_agent
from tests.agents import processes
from tests.agents.processes import Fleet

from .support import one_error_line, run_cli, run_cli_async, started_worker

fleet = processes.fleet


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("no_such_module_xyz:Agent", "cannot import 'no_such_module_xyz'"),
        ("tests.agents.sample_agents:Nope", "has no attribute 'Nope'; the agents it defines are: "),
        ("tests.agents.sample_agents:NotAnAgent", "is a class that is not a relaybus Agent"),
        ("tests.agents.sample_agents:SUFFIX", "is a str that is not a relaybus Agent"),
        ("tests.agents.sample_agents", "is not of the form module:Class"),
    ],
)
def test_wrong_module_class_gives_one_clear_line_and_exit_2(spec: str, expected: str) -> None:
    proc = run_cli("worker", spec, "--amqp-url", "amqp://guest:guest@127.0.0.1:1/")
    assert proc.returncode == 2
    assert expected in one_error_line(proc)


def test_a_module_that_fails_to_import_is_named_with_its_error(tmp_path: Path) -> None:
    (tmp_path / "broken_agents.py").write_text("class Oops(:\n    pass\n")
    proc = run_cli("worker", "broken_agents:Oops", cwd=tmp_path)
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "importing 'broken_agents' failed: SyntaxError" in line
    assert "broken_agents.py:1" in line


def test_an_agent_class_that_needs_arguments_is_refused_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "needy_agents.py").write_text(
        "from relaybus.agents import Agent\n\n"
        "class Needy(Agent):\n"
        "    name = 'needy'\n"
        "    def __init__(self, key: str) -> None:\n"
        "        self.key = key\n"
    )
    proc = run_cli("worker", "needy_agents:Needy", cwd=tmp_path)
    assert proc.returncode == 2
    assert "must be constructible without arguments" in one_error_line(proc)


def test_unreachable_broker_gives_one_line_with_the_password_masked() -> None:
    proc = run_cli(
        *("worker", "tests.agents.sample_agents:Echo", "--amqp-url", "amqp://guest:s3cret@127.0.0.1:1/"),
        "--exit-if-down",
    )
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert "127.0.0.1:1" in line
    assert "s3cret" not in proc.stderr + proc.stdout


def test_bad_concurrency_is_a_usage_error() -> None:
    proc = run_cli("worker", "tests.agents.sample_agents:Echo", "--concurrency", "0")
    assert proc.returncode == 2
    assert "--concurrency: must be at least 1" in proc.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_module_in_the_current_directory_is_hosted_and_a_signal_stops_it_with_exit_0(
    tmp_path: Path, signum: int
) -> None:
    (tmp_path / "my_agents.py").write_text(
        "from relaybus.agents import Agent\n\n"
        "class Mine(Agent):\n"
        "    name = 'mine'\n"
        "    topics = ('mine.*',)\n"
    )
    # The console script, not `python -m` (which would put the current directory on sys.path itself).
    script = str(Path(sys.executable).with_name("relaybus"))
    argv = [script, "--log-json", "worker", "my_agents:Mine", "--amqp-url", "memory://"]
    with started_worker(argv, cwd=tmp_path) as (proc, lines):
        seen = "".join(lines)
        proc.send_signal(signum)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, seen + out
    assert "worker_stopped" in out


def test_load_agent_accepts_an_instance_and_refuses_an_invalid_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "instances_mod.py").write_text(
        "from relaybus.agents import Agent\n\n"
        "class A(Agent):\n"
        "    name = 'inst'\n\n"
        "ready = A()\n"
        "class Nameless(Agent):\n"
        "    pass\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_agent("instances_mod:ready").name == "inst"
    with pytest.raises(CliError, match="has no name"):
        load_agent("instances_mod:Nameless")


def test_worker_without_agents_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["worker"])
    assert exc.value.code == 2
    assert "module:Class" in capsys.readouterr().err


@pytest.mark.integration
async def test_a_deployed_worker_runs_the_script_and_the_mode_its_agent_declares(fleet: Fleet) -> None:
    await fleet.start("Scripted")
    agent = ("--agent", fleet.name("scripted"), "--wait", "--amqp-url", fleet.amqp_url)
    script = await run_cli_async(
        "submit", "--mode", "script", "--input", '{"script": "say", "args": ["deployed"]}', *agent
    )
    assert script.code == 0, script.stdout + script.stderr
    assert json.loads(script.stdout)["output"]["stdout"] == "said: deployed\n"
    shout = await run_cli_async("submit", "--mode", "shout", "--prompt", "hey", *agent)
    assert shout.code == 0, shout.stdout + shout.stderr
    assert json.loads(shout.stdout)["output"] == "HEY"


def test_a_declared_script_whose_program_is_missing_stops_the_start_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "lint_agents.py").write_text(
        "from relaybus import Agent, Script\n\n"
        "class Linter(Agent):\n"
        "    name = 'linter'\n"
        "    scripts = (Script('lint', ('no-such-linter-relaybus', 'check')),)\n"
    )
    proc = run_cli(
        "worker", "lint_agents:Linter", "--amqp-url", "memory://", "--log-level", "WARNING", cwd=tmp_path
    )
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "Linter.scripts: script 'lint': command 'no-such-linter-relaybus' is not an executable" in line
