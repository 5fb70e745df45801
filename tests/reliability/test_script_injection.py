"""Option injection into a registered script, against a real RabbitMQ: ``["--output=FILE"]`` for ``git log``.

A worker (its own vhost) hosts agent ``gitlog`` whose executor has ``git log`` registered on a repository of
the test's own. An attacker who may publish tasks sends ``args=["--output=<file>"]``, which ``git log``
would take as its option to write its output into any file the worker may write. With the default
declaration the argument follows ``--`` (git takes it as a path: no file appears); with a pattern it is
refused (REJECTED, nothing runs). Only a script registered with ``options=True`` writes the file: the
attack itself, shown so that the other two are known to test something.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from relaybus.agents import Agent, AgentWorker
from relaybus.bus.amqp import AmqpBus
from relaybus.executor import ExecutorConfig, ScriptArgs, TaskExecutor
from relaybus.messages import AgentTask, ExecutionResult, ExecutionStatus
from relaybus.orchestrator import ProjectOrchestrator

pytestmark = [pytest.mark.integration]


class GitLog(Agent):
    name = "gitlog"
    topics = ("repo.log",)
    mode = "script"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    git = ["git", "-C", str(repo), "-c", "user.email=t@example.invalid", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "first"], check=True)
    return repo


@pytest.fixture
async def orchestrator(amqp_vhost_url: str, repo: Path) -> AsyncIterator[ProjectOrchestrator]:
    async with TaskExecutor(ExecutorConfig()) as executor:
        executor.register_script("log", ["git", "log"], cwd=str(repo))
        executor.register_script(
            "log_hash", ["git", "log"], cwd=str(repo), args=ScriptArgs(pattern=r"[0-9a-f]{7,40}")
        )
        executor.register_script("log_unsafe", ["git", "log"], cwd=str(repo), args=ScriptArgs(options=True))
        async with (
            AmqpBus(amqp_vhost_url) as bus,
            AgentWorker(bus, [GitLog()], executor=executor, heartbeat_interval_s=60),
            ProjectOrchestrator(bus) as orchestrator,
        ):
            yield orchestrator


async def inject(orchestrator: ProjectOrchestrator, script: str, target: Path) -> ExecutionResult:
    task = AgentTask(
        topic="repo.log",
        mode="script",
        input={"script": script, "args": [f"--output={target}"]},
        timeout_s=30,
    )
    return await orchestrator.execute_task(task)


async def test_by_default_an_option_argument_is_a_path_and_writes_no_file(
    orchestrator: ProjectOrchestrator, tmp_path: Path
) -> None:
    target = tmp_path / "planted.txt"
    result = await inject(orchestrator, "log", target)
    assert result.status is ExecutionStatus.SUCCESS  # git log -- --output=...: no such path, no commits
    assert not target.exists()


async def test_an_argument_outside_the_declared_pattern_is_refused_and_nothing_runs(
    orchestrator: ProjectOrchestrator, tmp_path: Path
) -> None:
    target = tmp_path / "planted.txt"
    result = await inject(orchestrator, "log_hash", target)
    assert result.status is ExecutionStatus.REJECTED
    assert result.error is not None
    assert result.error.type == "InvalidScriptRequest"
    assert "does not match the script's pattern" in result.error.message
    assert not target.exists()


async def test_a_script_that_allows_options_is_open_to_the_attack(
    orchestrator: ProjectOrchestrator, tmp_path: Path
) -> None:
    target = tmp_path / "planted.txt"
    result = await inject(orchestrator, "log_unsafe", target)
    assert result.status is ExecutionStatus.SUCCESS
    assert "first" in target.read_text()
