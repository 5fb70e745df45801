"""The script mode: registered commands only, argument lists, process-group kill, output cap."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from relaybus.exceptions import ExecutorError
from relaybus.executor import ExecutorConfig, ScriptArgs, TaskExecutor
from relaybus.messages import AgentTask, ExecutionStatus
from tests.eventually import eventually

# A shell started by argv (never by relaybus) that leaves a background child in its group and writes the
# child's pid to the file given as $1; "wait" keeps it running, "exit" leaves the child behind.
SPAWN_AND_WAIT = ["sh", "-c", 'sleep 60 & echo $! > "$1"; wait', "spawner"]
SPAWN_AND_EXIT = ["sh", "-c", 'sleep 60 & echo $! > "$1"; echo started', "spawner"]


def script_task(name: str, *args: str, **fields: Any) -> AgentTask:
    return AgentTask(topic="test.script", mode="script", input={"script": name, "args": list(args)}, **fields)


@pytest.fixture
async def executor() -> Any:
    async with TaskExecutor(ExecutorConfig(script_max_output_bytes=1000)) as ex:
        ex.register_script("printf", ["printf", "%s\\n"], args=ScriptArgs(separator=False))
        ex.register_script("python", [sys.executable, "-c"], args=ScriptArgs(separator=False))
        ex.register_script("spawn_wait", SPAWN_AND_WAIT, args=ScriptArgs(separator=False))
        ex.register_script("spawn_exit", SPAWN_AND_EXIT, args=ScriptArgs(separator=False))
        yield ex


def gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (absent, or a zombie waiting for init to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


async def wait_gone(pid: int, what: str = "the script's background child was killed") -> None:
    # Well within the child's ``sleep 60``: a child left running fails the test instead of ending by itself.
    await eventually(lambda: gone(pid), timeout=20, what=f"{what} (pid {pid})")


async def cancel_once_started(executor: TaskExecutor, pidfile: Path) -> None:
    """``executor.cancel`` a ``spawn_wait`` task once its background child runs: CANCELLED, child killed."""
    task = script_task("spawn_wait", str(pidfile))
    running = asyncio.create_task(executor.execute(task))
    child = await read_pid(pidfile)
    assert executor.cancel(task.id)
    assert (await running).status is ExecutionStatus.CANCELLED
    await wait_gone(child)


async def read_pid(path: Path) -> int:
    text = await eventually(
        lambda: path.exists() and path.read_text().strip(), what="the script wrote its child's pid"
    )
    return int(text)


async def test_arguments_reach_the_program_literally(executor: TaskExecutor) -> None:
    tricky = ["; rm -rf /", "$(whoami)", "*", "a b", "'quoted'"]
    result = await executor.execute(script_task("printf", *tricky))
    assert result.status is ExecutionStatus.SUCCESS
    assert result.output == {
        "exit_code": 0,
        "stdout": "\n".join(tricky) + "\n",
        "stderr": "",
        "truncated": False,
    }


async def test_nonzero_exit_is_a_failure_with_stderr_and_output(executor: TaskExecutor) -> None:
    result = await executor.execute(
        script_task("python", "import sys; sys.stderr.write('broken'); sys.exit(3)")
    )
    assert result.status is ExecutionStatus.FAILURE
    assert result.error is not None
    assert result.error.type == "ScriptFailed"
    assert "exited with code 3: broken" in result.error.message
    assert isinstance(result.output, dict)
    assert result.output["exit_code"] == 3


async def test_the_environment_of_the_worker_is_not_passed(
    executor: TaskExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-should-not-leak-123456")
    executor.register_script("env", ["env"], env={"GREETING": "hi"})
    result = await executor.execute(script_task("env"))
    assert isinstance(result.output, dict)
    stdout = str(result.output["stdout"])
    assert "GREETING=hi" in stdout
    assert "sk-should-not-leak" not in stdout


async def test_output_is_capped_and_the_process_is_not_blocked(executor: TaskExecutor) -> None:
    result = await executor.execute(script_task("python", "print('x' * 1_000_000)"))
    assert result.status is ExecutionStatus.SUCCESS
    assert isinstance(result.output, dict)
    assert result.output["stdout"] == "x" * 1000
    assert result.output["truncated"] is True


async def test_timeout_kills_the_whole_process_group(executor: TaskExecutor, tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    running = asyncio.create_task(executor.execute(script_task("spawn_wait", str(pidfile), timeout_s=1.0)))
    child = await read_pid(pidfile)
    result = await running
    assert result.status is ExecutionStatus.TIMEOUT
    await wait_gone(child, "the background child did not outlive the timed-out script")


async def test_children_left_behind_by_a_finished_command_are_killed(
    executor: TaskExecutor, tmp_path: Path
) -> None:
    pidfile = tmp_path / "child.pid"
    result = await executor.execute(script_task("spawn_exit", str(pidfile), timeout_s=30))
    assert result.status is ExecutionStatus.SUCCESS  # and it did not wait 60 s for the sleeping child
    assert isinstance(result.output, dict)
    assert result.output["stdout"] == "started\n"
    await wait_gone(int(pidfile.read_text()))


async def test_outer_cancellation_kills_the_process_group(executor: TaskExecutor, tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    running = asyncio.create_task(executor.execute(script_task("spawn_wait", str(pidfile))))
    child = await read_pid(pidfile)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    await wait_gone(child)


async def test_a_cancel_that_lands_while_the_script_starts_kills_its_whole_group(
    executor: TaskExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The process runs (and has started its background child) before ``subprocess_exec`` returns: a cancel
    # in that window once left the child running for its whole ``sleep 60`` (seen in CI).
    loop = asyncio.get_running_loop()
    real_exec = loop.subprocess_exec
    pidfile = tmp_path / "child.pid"

    async def slow_to_return(*args: Any, **kwargs: Any) -> Any:
        started = await real_exec(*args, **kwargs)
        await read_pid(pidfile)  # the child is there; the cancel comes before this call returns
        await asyncio.sleep(0.5)
        return started

    monkeypatch.setattr(loop, "subprocess_exec", slow_to_return)
    await cancel_once_started(executor, pidfile)


async def test_executor_cancel_kills_the_script(executor: TaskExecutor, tmp_path: Path) -> None:
    await cancel_once_started(executor, tmp_path / "child.pid")


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"script": "rm"}, "not registered"),
        ({}, "not registered"),
        ({"script": "printf", "args": "a b"}, "list of strings"),
        ({"script": "printf", "args": [1, 2]}, "list of strings"),
        ({"script": "printf", "args": ["x"] * 300}, "at most 256"),
        ({"script": "printf", "args": ["a\x00b"]}, "NUL"),
        ({"script": "printf", "command": "ls"}, "unknown keys"),
    ],
)
async def test_bad_script_requests_are_rejected(
    executor: TaskExecutor, spec: dict[str, Any], problem: str
) -> None:
    result = await executor.execute(AgentTask(topic="t", mode="script", input=spec))
    assert result.status is ExecutionStatus.REJECTED
    assert result.error is not None
    assert problem in result.error.message


async def test_unregistered_script_names_the_registered_ones(executor: TaskExecutor) -> None:
    result = await executor.execute(script_task("rm", "-rf", "/"))
    assert result.error is not None
    assert "printf" in result.error.message
    assert "register_script" in result.error.message


@pytest.mark.parametrize(
    ("name", "argv", "problem"),
    [
        ("ok", "ls -l", "argument list"),
        ("ok", [], "argument list"),
        ("bad name", ["ls"], "script name"),
        ("ok", ["definitely-not-a-command-xyz"], "not an executable"),
        ("ok", ["/nonexistent/bin/tool"], "not an executable"),
    ],
)
def test_register_script_refuses_unusable_commands(name: str, argv: Any, problem: str) -> None:
    ex = TaskExecutor(ExecutorConfig())
    with pytest.raises(ExecutorError, match=problem):
        ex.register_script(name, argv)


def test_registered_program_is_resolved_to_an_absolute_path() -> None:
    ex = TaskExecutor(ExecutorConfig())
    script = ex.register_script("ls", ["ls", "-l"])
    assert os.path.isabs(script.argv[0])
    assert script.argv[1:] == ("-l",)
