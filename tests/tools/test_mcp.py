"""``MCPServer`` against the project's own MCP server (examples/mcp_server.py), over stdio and HTTP.

Every server here is a real child process. The checks that matter: one session serves many concurrent
calls (the server counts the ``initialize`` requests it answered), and a server that dies mid-call gives
error outcomes and is reopened for the next call.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from relaybus import ConfigError, MCPServer, UsageError, tool
from relaybus.tools import MCPConnectionError, MCPTool, Toolbox, ToolOutcome

REPO = Path(__file__).resolve().parents[2]
SERVER_COMMAND = [sys.executable, "-m", "examples.mcp_server"]


def stdio_server(**options: Any) -> MCPServer:
    return MCPServer.stdio(SERVER_COMMAND, cwd=REPO, **options)


def by_name(server: MCPServer) -> dict[str, MCPTool]:
    return {t.name: t for t in server.tools}


async def info(server: MCPServer) -> dict[str, Any]:
    outcome = await by_name(server)["server_info"].call({})
    assert not outcome.is_error, outcome.content
    return json.loads(outcome.content)  # type: ignore[no-any-return]


# --- stdio -----------------------------------------------------------------------------------------------


async def test_the_servers_tools_are_listed_with_its_descriptions_and_schemas() -> None:
    async with stdio_server() as server:
        tools = by_name(server)
        add = await tools["add"].call('{"a": 2, "b": 40}')
    assert set(tools) == {"add", "word_count", "server_info", "sleep", "crash"}
    spec = tools["add"].spec
    assert spec.description == "Add two integers."
    assert spec.parameters["required"] == ["a", "b"]
    assert spec.parameters["properties"]["a"]["type"] == "integer"
    assert add == ToolOutcome("42")


async def test_twenty_concurrent_calls_share_one_session() -> None:
    async with stdio_server() as server:
        tools = by_name(server)
        infos, counts = await asyncio.gather(
            asyncio.gather(*(tools["server_info"].call({}) for _ in range(20))),
            asyncio.gather(*(tools["word_count"].call({"text": "a b " * i}) for i in range(20))),
        )
        opened = server.sessions_opened
    seen = [json.loads(o.content) for o in infos]
    assert len({s["pid"] for s in seen}) == 1
    assert {s["initializations"] for s in seen} == {1}
    assert [json.loads(o.content)["words"] for o in counts] == [2 * i for i in range(20)]
    assert opened == 1


async def test_the_servers_own_validation_and_errors_are_error_outcomes() -> None:
    async with stdio_server() as server:
        tools = by_name(server)
        bad = await tools["add"].call({"a": "one"})
        not_json = await tools["add"].call("{a: 1")
        after = await tools["add"].call({"a": 1, "b": 1})
    assert bad.is_error
    assert bad.content.startswith("add: ")
    assert "validation error" in bad.content
    assert not_json.is_error
    assert "not valid JSON" in not_json.content
    assert after == ToolOutcome("2")


async def test_a_call_past_the_timeout_is_an_error_outcome_and_the_session_goes_on() -> None:
    async with stdio_server(timeout_s=0.3) as server:
        tools = by_name(server)
        slow = await tools["sleep"].call({"seconds": 5})
        after = await tools["add"].call({"a": 1, "b": 2})
        opened = server.sessions_opened
    assert slow == ToolOutcome("sleep did not answer within its timeout of 0.3 s", is_error=True)
    assert after == ToolOutcome("3")
    assert opened == 1


async def test_a_server_that_crashes_mid_call_gives_error_outcomes_then_is_reopened() -> None:
    async with stdio_server() as server:
        tools = by_name(server)
        before = await info(server)
        slow, crash = await asyncio.gather(
            tools["sleep"].call({"seconds": 10}), tools["crash"].call({"after_s": 0.2})
        )
        after = await tools["add"].call({"a": 2, "b": 2})
        now = await info(server)
        opened = server.sessions_opened
    assert slow.is_error
    assert crash.is_error
    assert "the MCP server 'examples.mcp_server' failed" in crash.content
    assert after == ToolOutcome("4")
    assert now["pid"] != before["pid"]
    assert now["initializations"] == 1
    assert opened == 2


async def test_a_server_killed_while_idle_is_reopened_by_the_next_call_which_succeeds() -> None:
    async with stdio_server() as server:
        pid = (await info(server))["pid"]
        os.kill(pid, signal.SIGKILL)
        async with asyncio.timeout(10):
            while server.is_connected:  # the end of its stdout is noticed without a call
                await asyncio.sleep(0.02)
        after = await by_name(server)["add"].call({"a": 1, "b": 1})
        opened = server.sessions_opened
    assert after == ToolOutcome("2")
    assert opened == 2


async def test_starts_are_counted_and_the_last_close_closes_the_one_session() -> None:
    server = stdio_server()
    async with server:
        async with server:  # a second worker of the same process sharing the Agent.tools object
            assert server.sessions_opened == 1
        assert server.is_connected
        assert await by_name(server)["add"].call({"a": 0, "b": 1}) == ToolOutcome("1")
    assert not server.is_connected
    held = server.tools[0]
    with pytest.raises(UsageError, match="not started"):
        await held.call({})


async def test_a_command_that_cannot_start_fails_the_start_with_the_reason() -> None:
    server = MCPServer.stdio(["/nonexistent/mcp-server"], connect_timeout_s=10)
    with pytest.raises(MCPConnectionError, match="could not open a session"):
        await server.start()
    assert not server.is_connected
    with pytest.raises(UsageError, match="known once started"):
        _ = server.tools


def test_the_command_is_an_argument_list_never_a_shell_string() -> None:
    with pytest.raises(ConfigError, match="list of arguments"):
        MCPServer.stdio("python -m examples.mcp_server")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="non-empty"):
        MCPServer.stdio([])
    with pytest.raises(ConfigError, match="http:// or https://"):
        MCPServer.http("127.0.0.1:8000/mcp")


def test_headers_and_env_stay_out_of_the_repr() -> None:
    server = MCPServer.http(
        "http://u:pw@127.0.0.1:1/mcp", headers={"Authorization": "Bearer sk-secret-token"}
    )
    child = MCPServer.stdio(SERVER_COMMAND, env={"API_KEY": "sk-another-secret"})
    shown = repr(server) + repr(vars(server)) + repr(child) + repr(vars(child._transport))
    assert "sk-secret-token" not in shown
    assert "sk-another-secret" not in shown
    assert ":pw@" not in shown


def test_without_the_sdk_an_mcp_server_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mcp", None)
    with pytest.raises(ConfigError, match=r"pip install 'relaybus\[mcp\]'"):
        MCPServer.stdio(SERVER_COMMAND)


def test_relaybus_imports_no_mcp_module_until_a_session_is_opened() -> None:
    code = (
        "import sys, relaybus; from relaybus import MCPServer, tool; MCPServer.stdio(['x']); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mcp', 'httpx2')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@tool
def add(a: int, b: int) -> int:
    """Add, in Python."""
    return a + b


async def test_a_toolbox_holds_python_and_mcp_tools_by_name_and_refuses_two_with_one_name() -> None:
    async with Toolbox([add, stdio_server(tool_prefix="mcp_")]) as box:
        names = [s.name for s in box.specs]
        python = await box.call("add", {"a": 1, "b": 2})
        remote = await box.call("mcp_add", {"a": 1, "b": 3})
        unknown = await box.call("mul", {})
    assert names == ["add", "mcp_add", "mcp_word_count", "mcp_server_info", "mcp_sleep", "mcp_crash"]
    assert (python, remote) == (ToolOutcome("3"), ToolOutcome("4"))
    assert unknown.is_error
    assert unknown.content.startswith("there is no tool named 'mul'; the tools are: add, mcp_add,")
    clash = stdio_server()
    with pytest.raises(ConfigError, match="two tools are named 'add'"):
        await Toolbox([add, clash]).start()
    assert not clash.is_connected  # the failed start closed what it opened


# --- streamable HTTP -------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class HttpServerProcess:
    """examples/mcp_server.py serving streamable HTTP on 127.0.0.1:<port>, restartable on the same port."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [*SERVER_COMMAND, "--http", "--port", str(self.port)],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "the MCP HTTP server exited at start"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("the MCP HTTP server did not listen within 60 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        if self.process is not None:
            self.process.wait(10)


@pytest.fixture
def http_server() -> Iterator[HttpServerProcess]:
    server = HttpServerProcess()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def http_client(http_server: HttpServerProcess) -> AsyncIterator[MCPServer]:
    async with MCPServer.http(http_server.url, headers={"X-Test": "1"}, timeout_s=20) as client:
        yield client


async def test_over_http_twenty_concurrent_calls_share_one_session(http_client: MCPServer) -> None:
    tools = by_name(http_client)
    infos = await asyncio.gather(*(tools["server_info"].call({}) for _ in range(20)))
    sums = await asyncio.gather(*(tools["add"].call({"a": i, "b": i}) for i in range(20)))
    seen = [json.loads(o.content) for o in infos]
    assert len({s["session"] for s in seen}) == 1
    assert seen[0]["session"] != "stdio"
    assert {s["initializations"] for s in seen} == {1}
    assert [o.content for o in sums] == [str(2 * i) for i in range(20)]
    assert http_client.sessions_opened == 1


async def test_over_http_a_crashed_server_gives_error_outcomes_then_a_new_session_works(
    http_server: HttpServerProcess, http_client: MCPServer
) -> None:
    tools = by_name(http_client)
    before = await info(http_client)
    slow, crash = await asyncio.gather(
        tools["sleep"].call({"seconds": 10}), tools["crash"].call({"after_s": 0.2})
    )
    assert slow.is_error
    assert crash.is_error
    http_server.stop()
    http_server.start()
    after = await tools["add"].call({"a": 20, "b": 22})
    now = await info(http_client)
    assert after == ToolOutcome("42")
    assert now["pid"] != before["pid"]
    assert now["session"] != before["session"]
    assert http_client.sessions_opened == 2
