"""An agent whose tools are an MCP server's: the project's own ``examples/mcp_server.py``, over stdio.

The worker starts the server once when it starts (one client session for every task it runs, reopened if
the server dies) and stops it when it stops; a server that cannot start fails the worker's start. Needs the
``mcp`` extra (``pip install 'relaybus[mcp]'``) and a model that calls tools.

Deploy, from the repository's root (the server runs as ``python -m examples.mcp_server``)::

    relaybus worker examples.mcp_agent:Calculator --amqp-url amqp://guest:guest@localhost:5672/

Use::

    relaybus submit --topic math.mcp --prompt "What is 19 + 23? And how many words has 'to be or not'?" --wait

Test in memory, with a scripted model: ``tests/agents/test_examples.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from relaybus import Agent, MCPServer

__all__ = ["SERVER", "Calculator"]

ROOT = Path(__file__).resolve().parents[1]

SERVER = MCPServer.stdio([sys.executable, "-m", "examples.mcp_server"], cwd=ROOT, name="relaybus-example")
"""Its tools: add, word_count, server_info, sleep and crash (see examples/mcp_server.py)."""


class Calculator(Agent):
    """Answers with the MCP server's tools (``add``, ``word_count``, ...); the agent loop runs the task."""

    name = "mcp-calculator"
    topics = ("math.mcp",)
    system_prompt = "Answer with the tools you have; call several at once when you can."
    tools = (SERVER,)
    max_turns = 4
