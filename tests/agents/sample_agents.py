"""Agents the tests deploy: in memory through ``relaybus.testing`` and as ``relaybus worker`` processes.

Integration tests share one RabbitMQ with other test runs, so a worker process started with the environment
variable ``RELAYBUS_TEST_AGENT_SUFFIX`` gives every agent name and topic here that suffix (``echo-1a2b``,
``sample-1a2b.echo``); :func:`name` and :func:`topic` compute the same names in the test process.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel

from relaybus import AgentTask, AgentTool, ExecutionResult, MCPServer, Script, tool
from relaybus.agents import Agent, AgentContext
from relaybus.executor import RunContext, ScriptArgs

SUFFIX = os.environ.get("RELAYBUS_TEST_AGENT_SUFFIX", "")
REPO_ROOT = Path(__file__).resolve().parents[2]


def name(base: str, suffix: str = SUFFIX) -> str:
    """The agent name ``base`` carries in a process started with ``suffix``."""
    return f"{base}{suffix}"


def topic(base: str, suffix: str = SUFFIX) -> str:
    """The topic ``sample.<base>`` as a process started with ``suffix`` subscribes to it."""
    return f"sample{suffix}.{base}"


class Echo(Agent):
    """Answers ``{"echo": prompt}`` after sleeping ``input["sleep_s"]`` (cancellable).

    With ``input["announce"]`` it first publishes ``{"task_id", "worker"}`` on ``event.sample.started``.
    """

    name = name("echo")
    topics = (topic("echo.#"),)

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        if task.input.get("announce"):
            await ctx.publish_event(topic("started"), {"task_id": str(task.id), "worker": ctx.worker})
        delay = task.input.get("sleep_s", 0)
        if isinstance(delay, int | float) and delay > 0:
            await asyncio.sleep(delay)
        return {"echo": task.prompt}


class ChainA(Agent):
    """A -> B -> C: each appends its letter on the way down and back up."""

    name = name("chain-a")
    topics = (topic("chain.a"),)

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        sub = await ctx.delegate(AgentTask(topic=topic("chain.b"), prompt=task.prompt + ">a"))
        if not sub.ok:
            return sub
        return {"text": f"{sub.output['text']}<a", "chain": sub.output["chain"]}


class ChainB(Agent):
    name = name("chain-b")
    topics = (topic("chain.b"),)

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        sub = await ctx.delegate(AgentTask(topic=topic("chain.c"), prompt=task.prompt + ">b"))
        if not sub.ok:
            return sub
        return {"text": f"{sub.output['text']}<b", "chain": sub.output["chain"]}


class ChainC(Agent):
    name = name("chain-c")
    topics = (topic("chain.c"),)

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        return {"text": task.prompt + ">c", "chain": list(ctx.chain)}


class LoopA(Agent):
    """Delegates to LoopB by topic, which delegates back to LoopA by topic: a loop only the receiver sees."""

    name = name("loop-a")
    topics = (topic("loop.a"),)

    async def handle(self, task: AgentTask, ctx: AgentContext) -> ExecutionResult:
        return await ctx.delegate(AgentTask(topic=topic("loop.b"), prompt=task.prompt))


class LoopB(Agent):
    name = name("loop-b")
    topics = (topic("loop.b"),)

    async def handle(self, task: AgentTask, ctx: AgentContext) -> ExecutionResult:
        return await ctx.delegate(AgentTask(topic=topic("loop.a"), prompt=task.prompt))


class SelfCaller(Agent):
    """Delegates to itself by name: refused before anything is sent."""

    name = name("self-caller")
    topics = (topic("self"),)

    async def handle(self, task: AgentTask, ctx: AgentContext) -> ExecutionResult:
        return await ctx.delegate(AgentTask(topic=topic("self"), agent=self.name))


class Fanout(Agent):
    """Delegates ``input["n"]`` echo tasks at once and joins their outputs in order."""

    name = name("fanout")
    topics = (topic("fanout"),)

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        count = task.input.get("n", 3)
        assert isinstance(count, int)
        subs = [AgentTask(topic=topic("echo"), prompt=f"{task.prompt}-{i}") for i in range(count)]
        results = await ctx.delegate_many(subs)
        return [r.output["echo"] if r.ok else r.status.value for r in results]


class Failing(Agent):
    name = name("failing")
    topics = (topic("fail"),)

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        raise ValueError(f"cannot handle {task.prompt!r}")


class NotJson(Agent):
    name = name("not-json")
    topics = (topic("not-json"),)

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        return {1, 2, 3}


class Writer(Agent):
    """Uses the default ``handle``: the task goes to the worker's executor with this mode and prompt."""

    name = name("writer")
    topics = (topic("write.*"),)
    system_prompt = "You write short, clear prose."


class Narrator(Agent):
    """Says two progress lines, ``one`` and ``two`` (events, when the caller streams), then answers
    ``{"told": prompt}``."""

    name = name("narrator")
    topics = (topic("narrate"),)

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        await ctx.emit("progress", text="one")
        await ctx.emit("progress", text="two")
        return {"told": task.prompt}


class Relay(Agent):
    """Delegates its task to the Writer and returns the Writer's output (streaming: its events forwarded)."""

    name = name("relay")
    topics = (topic("relay"),)

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        await ctx.emit("progress", text="asking the writer")
        sub = await ctx.delegate(AgentTask(topic=topic("write.relayed"), prompt=task.prompt))
        return sub.output if sub.ok else sub


class Announcer(Agent):
    name = name("announcer")
    topics = (topic("announce"),)

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        await ctx.publish_event(topic("announced"), {"prompt": task.prompt})
        return "announced"


class Rendezvous(Agent):
    """Answers ``{"met": true}`` once ``input["size"]`` tasks of the same ``input["group"]`` wait here at
    once, ``{"met": false}`` after 10 s alone: proof that the calls were concurrent, without a clock."""

    name = name("rendezvous")
    topics = (topic("meet"),)
    arrived: ClassVar[dict[str, int]] = {}
    complete: ClassVar[dict[str, asyncio.Event]] = {}

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        group = str(task.input.get("group", ""))
        size = task.input.get("size", 2)
        assert isinstance(size, int)
        self.arrived[group] = self.arrived.get(group, 0) + 1
        everyone = self.complete.setdefault(group, asyncio.Event())
        if self.arrived[group] >= size:
            everyone.set()
        try:
            async with asyncio.timeout(10):
                await everyone.wait()
        except TimeoutError:
            return {"met": False, "group": group}
        return {"met": True, "group": group}


@tool
def lookup(key: str) -> str:
    """Look a key up."""
    return f"value of {key}"


@tool
def explode(reason: str) -> str:
    """Always raises."""
    raise RuntimeError(f"boom: {reason}")


@tool
async def hang() -> str:
    """Never answers."""
    await asyncio.sleep(3600)
    return "never"


class Down(Agent):
    """Deployed nowhere: a test declares its queue to play an agent whose workers are all down."""

    name = name("down")
    topics = (topic("down"),)


class ToolUser(Agent):
    """The agent loop: other agents over the bus (in other processes) and Python tools."""

    name = name("tool-user")
    topics = (topic("tools"),)
    system_prompt = "Use your tools."
    max_turns = 3
    tools = (
        AgentTool(topic("meet"), name="meet", description="Meet the others"),
        AgentTool(topic("write.note"), name="write", description="Ask the writer for a sentence"),
        AgentTool(topic("echo"), name="echo", description="Echo the prompt"),
        AgentTool(topic("down"), name="ask_down", description="Nobody runs this agent", timeout_s=1.0),
        lookup,
        explode,
        hang,
    )


class Verdict(BaseModel):
    approve: bool
    reasons: list[str]


class Judge(Agent):
    """Structured output: the answer is validated against ``Verdict``."""

    name = name("judge")
    topics = (topic("judge"),)
    output_schema = Verdict


class McpUser(Agent):
    """Every tool of the project's own MCP server, one stdio session per worker process."""

    name = name("mcp-user")
    topics = (topic("mcp"),)
    tools = (MCPServer.stdio([sys.executable, "-m", "examples.mcp_server"], cwd=REPO_ROOT, name="example"),)


@tool
async def stall(note: str) -> str:
    """Writes the file ``$RELAYBUS_TEST_STALL_FILE`` and, when that variable is set, hangs (to be killed)."""
    marker = os.environ.get("RELAYBUS_TEST_STALL_FILE")
    if marker:
        Path(marker).write_text(note)
        await asyncio.sleep(3600)
    return f"went on after {note}"


class Journaled(Agent):
    """A loop of several turns whose third turn's tool hangs where ``RELAYBUS_TEST_STALL_FILE`` is set: the
    worker is killed there, and another resumes the loop from the journal."""

    name = name("journaled")
    topics = (topic("journal"),)
    max_turns = 6
    tools = (lookup, stall)


class CountedOnce(Agent):
    """Each task it runs is a side effect: a line appended to ``$RELAYBUS_TEST_COUNT_FILE``; then it waits
    until the file ``$RELAYBUS_TEST_RELEASE_FILE`` exists (so that a test can kill its caller meanwhile)."""

    name = name("counted")
    topics = (topic("counted"),)

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        with Path(os.environ["RELAYBUS_TEST_COUNT_FILE"]).open("a") as counted:
            counted.write(f"{task.id}\n")
        release = Path(os.environ["RELAYBUS_TEST_RELEASE_FILE"])
        while not release.exists():
            await asyncio.sleep(0.05)
        return f"counted {task.prompt}"


class JournaledDelegator(Agent):
    """A loop whose first turn delegates to ``CountedOnce``: its worker is killed while the call runs, and
    another resumes the loop, sending the call again under the same id."""

    name = name("journaled-delegator")
    topics = (topic("journal.delegate"),)
    max_turns = 3
    tools = (AgentTool(topic("counted"), name="count", description="Count something"),)


class Shout:
    """A custom execution mode: the prompt in capitals."""

    async def run(self, task: AgentTask, ctx: RunContext) -> ExecutionResult:
        return ExecutionResult.success(task.id, task.prompt.upper())


class Scripted(Agent):
    """Declares a script (``say``: ``echo`` with the task's args) and a custom mode (``shout``); the task
    names the mode."""

    name = name("scripted")
    topics = (topic("scripted"),)
    # echo takes no options, so no `--` before the task's arguments (ScriptArgs puts one there by default)
    scripts = (Script("say", ("echo", "said:"), args=ScriptArgs(separator=False)),)
    modes: ClassVar[dict[str, Any]] = {"shout": Shout()}


ALL = (
    Echo,
    ChainA,
    ChainB,
    ChainC,
    LoopA,
    LoopB,
    SelfCaller,
    Fanout,
    Failing,
    NotJson,
    Writer,
    Relay,
    Announcer,
    Rendezvous,
    Down,
    ToolUser,
    Judge,
    McpUser,
    Journaled,
    Scripted,
)


class NotAnAgent:
    """For the CLI test: a class that does not subclass Agent."""
