"""The README tells the truth: its Python runs, its commands parse, its configuration table matches the code.

No broker: the examples that need one run on the in-process MemoryBus, and every `relaybus ...` command the
README shows is parsed by the real argument parser instead of being run.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import importlib
import os
import re
import shlex
import subprocess
import sys
import types
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import relaybus
from relaybus.cli import build_parser
from relaybus.cli._common import DEFAULT_AMQP_URL, EVENT_LOOP_ENV
from relaybus.executor.config import DEFAULT_MODELS, ExecutorConfig
from relaybus.state import STATE_URL_ENV

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
_ENV_ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=")
_ENV_NAME = re.compile(r"\b(?:RELAYBUS|OPENAI|ANTHROPIC)_[A-Z_]+\b")
# Flags of other programs the README shows (docker compose, mypy), never passed to relaybus.
_FOREIGN_FLAGS = {"--build", "--scale", "--rm", "--strict"}


def code_blocks(language: str) -> list[str]:
    return [body for lang, body in _FENCE.findall(README) if lang == language]


def python_block(first_line: str) -> str:
    """The Python block whose first line is ``first_line`` (how the README names its files)."""
    matches = [b for b in code_blocks("python") if b.splitlines()[0].startswith(first_line)]
    assert len(matches) == 1, f"expected one python block starting with {first_line!r}, got {len(matches)}"
    return matches[0]


def python_block_containing(text: str) -> str:
    matches = [b for b in code_blocks("python") if text in b]
    assert len(matches) == 1, f"expected one python block containing {text!r}, got {len(matches)}"
    return matches[0]


def compile_snippet(source: str, name: str) -> types.CodeType:
    # The tour's snippets use `await` at top level, as they would read inside `async def main()`.
    return compile(source, name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)


async def run_snippet(source: str, name: str) -> dict[str, Any]:
    """Run a snippet as the body of an async function; return its globals."""
    namespace: dict[str, Any] = {"__name__": f"readme_{name}"}
    result = types.FunctionType(compile_snippet(source, name), namespace)()
    if asyncio.iscoroutine(result):
        await result
    return namespace


async def run_test_functions(namespace: dict[str, Any]) -> list[str]:
    """Await every ``test_*`` coroutine function a snippet defined; return their names."""
    tests: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        (name, fn)
        for name, fn in namespace.items()
        if name.startswith("test_") and asyncio.iscoroutinefunction(fn)
    ]
    for _, fn in tests:
        await fn()
    return [name for name, _ in tests]


# --- Python ------------------------------------------------------------------------------------------------


def test_the_readme_has_the_blocks_these_tests_read() -> None:
    assert len(code_blocks("python")) >= 5
    assert code_blocks("sh")
    assert code_blocks("yaml")


@pytest.mark.parametrize("index", range(len(code_blocks("python"))))
def test_every_python_block_compiles(index: int) -> None:
    compile_snippet(code_blocks("python")[index], f"README python block {index}")


@pytest.mark.parametrize("index", range(len(code_blocks("python"))))
def test_every_relaybus_name_a_python_block_imports_exists(index: int) -> None:
    tree = ast.parse(code_blocks("python")[index], feature_version=(3, 11))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "relaybus":
            module = importlib.import_module(node.module or "")
            missing = [alias.name for alias in node.names if not hasattr(module, alias.name)]
            assert not missing, f"README imports {missing} from {node.module}, which has no such name"
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "relaybus"
        ):
            assert hasattr(relaybus, node.attr), f"README uses relaybus.{node.attr}, which does not exist"


@pytest.fixture
def my_agents(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """The README's my_agents.py, importable as ``my_agents`` the way a user's file would be."""
    module = types.ModuleType("my_agents")
    module.__file__ = "README.md:my_agents.py"
    exec(compile(python_block("# my_agents.py"), "README my_agents.py", "exec"), module.__dict__)
    monkeypatch.setitem(sys.modules, "my_agents", module)
    return module


async def test_write_your_own_agent_test_passes_as_written(my_agents: types.ModuleType) -> None:
    namespace = await run_snippet(python_block("# test_my_agents.py"), "test_my_agents")
    ran = await run_test_functions(namespace)
    assert ran == ["test_reviewer_asks_the_writer_for_a_draft"]


def test_the_test_recipe_runs_the_agents_test_and_pytest_asyncio_warns_nothing(tmp_path: Path) -> None:
    (tmp_path / "my_agents.py").write_text(python_block("# my_agents.py"))
    test_file = python_block("# test_my_agents.py")
    (tmp_path / "test_my_agents.py").write_text(test_file)
    recipe = re.search(r"\(run: (pytest [^)]+)\)", test_file.splitlines()[0])
    assert recipe, "the test file's first line says how to run it"
    argv = shlex.split(recipe.group(1))
    # pytest-asyncio 0.24 and 0.25 (which pyproject.toml allows) warn unless the fixture loop scope is set.
    assert {"asyncio_mode=auto", "asyncio_default_fixture_loop_scope=function"} <= set(argv)
    # Outside this repository (no pyproject.toml above tmp_path): the recipe's options are all pytest gets.
    proc = subprocess.run(
        [sys.executable, "-m", *argv, "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
    assert "warning" not in proc.stdout.lower(), proc.stdout


async def test_the_agents_with_tools_example_passes_as_written() -> None:
    namespace = await run_snippet(python_block("# tool_agents_demo.py"), "tool_agents_demo")
    ran = await run_test_functions(namespace)
    assert ran == ["test_the_solver_calls_both_tools_in_one_turn"]


async def test_the_streaming_example_passes_as_written() -> None:
    namespace = await run_snippet(python_block("# streaming_demo.py"), "streaming_demo")
    ran = await run_test_functions(namespace)
    assert ran == ["test_the_reviewer_streams_its_answer"]


async def test_the_rate_limit_test_passes_against_the_fake_llm_server() -> None:
    namespace = await run_snippet(python_block_containing("FakeLLMServer(latency_s="), "test_rate_limits")
    ran = await run_test_functions(namespace)
    assert ran == ["test_my_agent_survives_rate_limits"]


async def test_the_executor_snippet_prints_an_echo_answer(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in set(_ENV_NAME.findall(README)):
        monkeypatch.delenv(name, raising=False)
    await run_snippet(python_block_containing("async with TaskExecutor() as executor"), "executor")
    printed = capsys.readouterr().out.splitlines()[-1]
    assert printed.startswith("success echo: Say hi ")
    assert "requests=1" in printed


async def test_the_orchestrator_snippet_runs_against_the_example_agents(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The snippet connects to RabbitMQ; here the same code meets the example agents on a MemoryBus.
    from examples.agents import Reviewer, WordCounter, Writer

    from relaybus.testing import AgentTestHarness, FakeExecutor

    source = python_block_containing("ProjectOrchestrator(bus) as orchestrator")
    llm = FakeExecutor(respond=lambda task, agent: f"{agent}: {task.prompt}")
    async with AgentTestHarness([Writer(), Reviewer(), WordCounter()], executor=llm) as harness:
        urls: list[str] = []

        async def connect(url: str, **options: Any) -> Any:
            urls.append(url)
            return _Borrowed(harness.bus)

        monkeypatch.setattr(relaybus, "connect", connect)
        await run_snippet(source, "orchestrator")
    assert urls == ["amqp://guest:guest@localhost:5672/"]
    printed = capsys.readouterr().out
    assert "'review': 'reviewer: add(a, b)'" in printed
    assert "{'words': 6, 'distinct': 4}, {'words': 3, 'distinct': 3}" in printed
    assert "<ExecutionStatus.SUCCESS: 'success'>: 2" in printed


class _Borrowed:
    """A bus lent to a snippet: ``async with`` uses it without closing it (its owner closes it)."""

    def __init__(self, bus: Any) -> None:
        self._bus = bus

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bus, name)

    async def __aenter__(self) -> Any:
        return self._bus

    async def __aexit__(self, *exc: object) -> None:
        return None


# --- the command line --------------------------------------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings}


def _all_flags(parser: argparse.ArgumentParser) -> set[str]:
    flags = _flags(parser)
    for sub in _subcommands(parser).values():
        flags |= _all_flags(sub)
    return flags


def _relaybus_argv(command: str) -> list[str] | None:
    """The arguments after ``relaybus`` in a shell line (env assignments, ``&`` and comments dropped)."""
    words = shlex.split(command, comments=True)
    while words and _ENV_ASSIGNMENT.match(words[0]):
        words.pop(0)
    if not words or words[0] != "relaybus":
        return None
    return [w for w in words[1:] if w != "&"]


def shell_commands() -> list[list[str]]:
    commands = []
    for block in code_blocks("sh"):
        for line in block.replace("\\\n", " ").splitlines():  # join continued lines first
            argv = _relaybus_argv(line)
            if argv is not None:
                commands.append(argv)
    return commands


def inline_commands() -> list[list[str]]:
    """``relaybus <command> ...`` in backticks in the prose: often a fragment (e.g. without its plan)."""
    prose = _FENCE.sub("", README)
    spans = re.findall(r"`(relaybus [^`]+)`", prose)
    return [argv for span in spans if (argv := _relaybus_argv(span.replace("...", ""))) is not None]


def test_the_readme_shows_every_sub_command() -> None:
    shown = {argv[0] for argv in shell_commands() + inline_commands() if argv}
    assert set(_subcommands(build_parser())) <= shown | {"--log-level"}


@pytest.mark.parametrize("argv", shell_commands(), ids=" ".join)
def test_every_command_in_a_shell_block_parses(argv: list[str]) -> None:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"`relaybus {' '.join(argv)}` from the README does not parse (exit {exc.code})")
    assert callable(getattr(args, "func", None)), f"`relaybus {' '.join(argv)}` names no sub-command"


@pytest.mark.parametrize("argv", inline_commands(), ids=" ".join)
def test_every_command_in_the_prose_names_real_sub_commands_and_flags(argv: list[str]) -> None:
    parser = build_parser()
    if argv == ["--version"]:
        return
    words = list(argv)
    while words and words[0].startswith("--"):  # global options before the sub-command
        assert words[0] in _flags(parser), f"relaybus has no option {words[0]}"
        words = words[2:] if words[0] in ("--log-level", "--log-format") else words[1:]
    assert words, f"`relaybus {' '.join(argv)}` names no sub-command"
    for word in words:
        subs = _subcommands(parser)
        if word.startswith("-"):
            assert word in _flags(parser), f"`relaybus {' '.join(argv)}`: {parser.prog} has no {word}"
        elif subs:
            assert word in subs, (
                f"`relaybus {' '.join(argv)}`: {word!r} is not a sub-command of {parser.prog}"
            )
            parser = subs[word]


def test_every_flag_the_readme_names_exists() -> None:
    known = _all_flags(build_parser())
    named = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", README)) - _FOREIGN_FLAGS
    assert named, "the README names no flags: the pattern is wrong"
    assert named <= known, f"the README names flags no relaybus command has: {sorted(named - known)}"


# --- configuration -----------------------------------------------------------------------------------------


def _configuration_table() -> dict[str, str]:
    """variable -> default column, from the README's Configuration table."""
    section = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    table: dict[str, str] = {}
    for row in re.findall(r"^\| (`.+?) \|.*\| (.+?) \|$", section, re.MULTILINE):
        for name in re.findall(r"`([A-Z_]+)`", row[0]):
            table[name] = row[1]
    return table


def test_the_configuration_table_lists_exactly_the_variables_the_code_reads() -> None:
    source = (ROOT / "src/relaybus/executor/config.py").read_text(encoding="utf-8")
    read_by_executor = set(re.findall(r'"((?:RELAYBUS|OPENAI|ANTHROPIC)_[A-Z_]+)"', source))
    documented = set(_configuration_table())
    assert documented == read_by_executor | {"RELAYBUS_AMQP_URL", STATE_URL_ENV, EVENT_LOOP_ENV}


def test_the_configuration_defaults_are_the_codes() -> None:
    table = _configuration_table()
    config = ExecutorConfig.from_env({})
    assert table["RELAYBUS_AMQP_URL"] == f"`{DEFAULT_AMQP_URL}`"
    assert table["RELAYBUS_LLM_PROVIDER"] == f"`{config.provider.kind}`"
    assert table["RELAYBUS_LLM_MODEL"] == ", ".join(f"`{m}`" for m in DEFAULT_MODELS.values())
    assert table["RELAYBUS_MAX_CONCURRENCY"] == str(config.max_concurrency)
    assert table["RELAYBUS_TASK_TIMEOUT_S"] == f"{config.default_timeout_s:g}"
    assert table["RELAYBUS_HTTP_TRANSPORT"] == f"`{config.http_transport}`"
    assert table["RELAYBUS_ECHO_LATENCY_S"].startswith(f"{config.provider.echo_latency_s:g} ")


def test_every_test_the_readme_names_exists() -> None:
    """The Guarantees section cites tests as proof; each cited file and test function must exist."""
    cited = re.findall(r"`(tests/[\w/]+\.py)(?:::(test_\w+))?`|`\.\.\.::(test_\w+)`", README)
    assert len(cited) >= 15, "the README should cite the tests behind its guarantees"
    sources = {path.relative_to(ROOT).as_posix(): path.read_text() for path in (ROOT / "tests").rglob("*.py")}
    everything = "\n".join(sources.values())
    for path, name, bare_name in cited:
        if path:
            assert path in sources, f"README cites {path}, which does not exist"
            if name:
                found = re.search(rf"def {name}\b", sources[path])
                assert found, f"README cites {path}::{name}: no such test"
        else:
            found = re.search(rf"def {bare_name}\b", everything)
            assert found, f"README cites ...::{bare_name}: no such test"


# --- set-up ------------------------------------------------------------------------------------------------


def _make_dry_run(target: str, tmp_path: Path) -> str:
    # A dry run against a virtualenv that does not exist yet: the commands a fresh clone would run.
    # Under `make test` (as in .ci/run) this make is a sub-make: without its parent's variables and with
    # --no-print-directory it prints only the commands, not "Entering directory" lines.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    proc = subprocess.run(
        ["make", "--no-print-directory", "-n", target, f"VENV={tmp_path / 'venv'}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_make_demo_installs_the_package_without_the_development_tools(tmp_path: Path) -> None:
    commands = _make_dry_run("demo", tmp_path)
    installs = [line for line in commands.splitlines() if "pip install" in line]
    assert installs, commands
    assert all("[dev" not in line and "--upgrade pip" not in line for line in installs), commands
    assert commands.strip().splitlines()[-1].endswith("relaybus demo")


def test_make_test_installs_the_development_tools(tmp_path: Path) -> None:
    commands = _make_dry_run("test", tmp_path)
    assert "pip install -q -e '.[dev]'" in commands
    assert commands.strip().splitlines()[-1].split()[0].endswith("pytest")  # the suite, with its options
