"""A tiny MCP server of relaybus's own, for the MCP example and the test suite.

Run it over stdio (what ``MCPServer.stdio`` starts)::

    python -m examples.mcp_server

or as a streamable-HTTP server on 127.0.0.1 (what ``MCPServer.http`` connects to)::

    python -m examples.mcp_server --http --port 8765       # endpoint http://127.0.0.1:8765/mcp

and give an agent its tools::

    tools = (MCPServer.stdio([sys.executable, "-m", "examples.mcp_server"]),)

Its tools: ``add`` and ``word_count`` (real work), ``server_info`` (which process and which client session
answered, so a test can check that many calls shared one session), and ``sleep`` / ``crash`` (a slow call,
and a server that dies mid-call, for the fault tests).
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer

__all__ = ["build_server", "main"]


class _InitializeCounter:
    """Counts the ``initialize`` requests this process answered: one per client session it opened."""

    def __init__(self) -> None:
        self.count = 0

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method == "initialize":
            self.count += 1
        return await call_next(ctx)


def build_server() -> MCPServer:
    """The server with its tools registered (a new one per call, so tests can serve it in process)."""
    initializations = _InitializeCounter()
    server = MCPServer("relaybus-example", middleware=[initializations])

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    def word_count(text: str) -> dict[str, int]:
        """Count the words and characters of a text."""
        return {"words": len(text.split()), "characters": len(text)}

    @server.tool()
    def server_info(ctx: Context) -> dict[str, Any]:
        """Which process answered, in which client session (the HTTP session id, or "stdio"), and how many
        sessions this process has initialized."""
        headers = ctx.headers or {}
        return {
            "pid": os.getpid(),
            "session": headers.get("mcp-session-id", "stdio"),
            "initializations": initializations.count,
        }

    @server.tool()
    async def sleep(seconds: float) -> str:
        """Wait ``seconds`` and answer "slept" (a slow tool)."""
        await asyncio.sleep(seconds)
        return "slept"

    @server.tool()
    async def crash(after_s: float = 0.0) -> str:
        """Kill this server process after ``after_s`` seconds, without answering (a server dying mid-call)."""
        await asyncio.sleep(after_s)
        os._exit(3)

    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m examples.mcp_server", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--http", action="store_true", help="serve streamable HTTP instead of stdio")
    parser.add_argument("--port", type=int, default=8765, help="HTTP port on 127.0.0.1 (default 8765)")
    args = parser.parse_args(argv)
    server = build_server()
    if args.http:
        server.run("streamable-http", host="127.0.0.1", port=args.port)
    else:
        server.run("stdio")


if __name__ == "__main__":
    main()
