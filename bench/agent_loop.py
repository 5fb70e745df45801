"""The agent loop's costs (issue 12), each against a baseline measured in the same run.

    python -m bench.agent_loop [--reps 3] [--tasks 20 200] [--out bench]

(a) CPU per turn over the bare provider call, in this process: tasks of an agent with one Python tool run
    on real workers over a MemoryBus, on a ``TaskExecutor`` whose provider is a ``ScriptedProvider``. Tasks
    of 9 turns (8 tool calls) and of 1 turn run in turns; the difference, per extra turn, is what one more
    turn costs (the per-task costs of bus and worker cancel out). The same requests replayed on a bare
    ``ScriptedProvider.complete`` give the provider's own share, which is subtracted.
(b) 200 (and 20) concurrent tasks of a tool agent, each two model turns with two parallel ``AgentTool``
    calls to agents in another worker process (each helper makes one model call), the fake model at 0.2 s
    over HTTP in a process of its own, on RabbitMQ: wall time against the ideal (turn, helpers at once,
    turn: 3 x 0.2 s) and against the same work written by hand with one ``ctx.delegate`` after the other
    (ideal 4 x 0.2 s), with the CPU seconds every process (broker included) spent on them.

Prints a Markdown table and writes ``agent_loop.json`` to ``--out``. Every child is stopped and every queue
deleted at the end, whatever happened.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

from bench import broker, loop_agents
from bench.common import READY, ROOT, Children, Spread, amqp_url, unique
from relaybus import Agent, AgentTask, ExecutionResult, ExecutorConfig, TaskExecutor, Usage, tool
from relaybus.bus.base import agent_queue_name
from relaybus.bus.connect import connect
from relaybus.bus.rpc import ReplyRouter
from relaybus.executor.llm.base import ChatRequest, Completion
from relaybus.executor.llm.chat import AssistantMessage, ChatMessage, ToolCall, UserMessage
from relaybus.executor.protocol import ChatTurn
from relaybus.log import configure_logging
from relaybus.testing import AgentTestHarness, ScriptedAnswer, ScriptedProvider, ScriptedToolCall, SeenRequest
from relaybus.tools import Toolbox

LONG_TURNS = 9
TARGET_US = 200.0


# -- (a) CPU per turn ---------------------------------------------------------------------------------------


@tool
async def noop(step: int) -> str:
    """Do nothing (a tool call costs only what the loop adds)."""
    return "ok"


class Turner(Agent):
    name = "bench-turner"
    topics = ("bench.turner",)
    tools = (noop,)
    max_turns = 100


def turner_model(seen: SeenRequest) -> ScriptedAnswer | str:
    """Calls ``noop`` until the task's number of turns (its prompt) is reached, then answers."""
    turns = int(next(m.text for m in seen.messages if isinstance(m, UserMessage)))
    done = sum(isinstance(m, AssistantMessage) for m in seen.messages)
    if done + 1 < turns:
        return ScriptedAnswer(tool_calls=[ScriptedToolCall("noop", {"step": done})])
    return "finished"


class FreeModel:
    """An executor whose model turns cost nothing: the same answers as :func:`turner_model`, made once."""

    def __init__(self) -> None:
        usage = Usage(prompt_tokens=1, completion_tokens=1, requests=1)
        request = ChatRequest((UserMessage("-"),))
        call = ToolCall("call", "noop", '{"step": 1}')
        self._call = ChatTurn(request, Completion("", usage, "free", "tool_calls", (call,)), None, 1, usage)
        self._final = ChatTurn(request, Completion("finished", usage, "free"), None, 1, usage)

    async def execute(self, task: AgentTask, *args: Any, **kwargs: Any) -> ExecutionResult:
        raise NotImplementedError

    def cancel(self, task_id: UUID) -> bool:
        return False

    async def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatTurn:
        turns = int(next(m.text for m in messages if isinstance(m, UserMessage)))
        done = sum(isinstance(m, AssistantMessage) for m in messages)
        return self._call if done + 1 < turns else self._final


async def _slope_us(h: AgentTestHarness, n: int) -> float:
    """CPU per extra turn: tasks of LONG_TURNS turns against tasks of 1."""
    long_cpu = await _loop_cpu(h, LONG_TURNS, n)
    short_cpu = await _loop_cpu(h, 1, n)
    return (long_cpu - short_cpu) / (n * (LONG_TURNS - 1)) * 1e6


async def loop_machinery(n: int, reps: int) -> list[float]:
    """The loop's own CPU per turn: with a model that costs nothing, minus the tool call it makes."""
    found = []
    async with AgentTestHarness([Turner()], executor=FreeModel(), concurrency=100) as h:
        await _loop_cpu(h, LONG_TURNS, 20)
        for _ in range(reps):
            found.append(await _slope_us(h, n) - await _tool_cpu(n) / n * 1e6)
    return found


async def _loop_cpu(h: AgentTestHarness, turns: int, n: int) -> float:
    tasks = [AgentTask(topic="bench.turner", prompt=str(turns)) for _ in range(n)]
    start = time.process_time()
    for chunk in range(0, n, 100):
        results = await h.run_many(tasks[chunk : chunk + 100])
        assert all(r.ok for r in results), [r.error for r in results if not r.ok][:1]
    return time.process_time() - start


async def _bare_cpu(requests: list[Any]) -> float:
    bare = ScriptedProvider(turner_model)
    start = time.process_time()
    for request in requests:
        await bare.complete(request)
    return time.process_time() - start


async def _executor_cpu(requests: list[Any]) -> float:
    """The same requests as turns of a ``TaskExecutor`` (``chat``: slots, timeout, ``LlmBackend.chat``)."""
    async with TaskExecutor(ExecutorConfig(), provider=ScriptedProvider(turner_model)) as executor:
        start = time.process_time()
        for request in requests:
            await executor.chat(request.messages, tools=request.tools)
        return time.process_time() - start


async def _tool_cpu(n: int) -> float:
    """``n`` calls of the tool alone through a Toolbox, as the loop makes them."""
    box = Toolbox([noop])
    start = time.process_time()
    for step in range(n):
        await box.call("noop", f'{{"step": {step % 8}}}')
    return time.process_time() - start


async def cpu_per_turn(n: int, reps: int) -> dict[str, Any]:
    """(a): the loop's CPU per extra turn, the bare provider's, and their difference (microseconds)."""
    provider = ScriptedProvider(turner_model)
    overheads, loops, bares, executors, tools = [], [], [], [], []
    async with (
        TaskExecutor(ExecutorConfig(), provider=provider) as executor,
        AgentTestHarness([Turner()], executor=executor, concurrency=100) as h,
    ):
        await _loop_cpu(h, LONG_TURNS, 20)  # warm up: imports, caches, the first schema
        for _ in range(reps):
            provider.requests.clear()
            long_cpu = await _loop_cpu(h, LONG_TURNS, n)
            long_requests = list(provider.requests)
            provider.requests.clear()
            short_cpu = await _loop_cpu(h, 1, n)
            short_requests = list(provider.requests)
            assert len(long_requests) == n * LONG_TURNS
            assert len(short_requests) == n
            extra_turns = n * (LONG_TURNS - 1)
            loop_us = (long_cpu - short_cpu) / extra_turns * 1e6
            bare_us = (await _bare_cpu(long_requests) - await _bare_cpu(short_requests)) / extra_turns * 1e6
            loops.append(loop_us)
            bares.append(bare_us)
            overheads.append(loop_us - bare_us)
            turns = len(long_requests)
            executors.append(
                (await _executor_cpu(long_requests) - await _bare_cpu(long_requests)) / turns * 1e6
            )
            tools.append(await _tool_cpu(extra_turns) / extra_turns * 1e6)
    return {
        "tasks": n,
        "turns_per_long_task": LONG_TURNS,
        "loop_us_per_turn": Spread.of(loops).__dict__,
        "bare_provider_us_per_turn": Spread.of(bares).__dict__,
        "overhead_us_per_turn": Spread.of(overheads).__dict__,
        "executor_chat_us_per_turn": Spread.of(executors).__dict__,
        "tool_call_us": Spread.of(tools).__dict__,
        "loop_alone_us_per_turn": Spread.of(await loop_machinery(n, reps)).__dict__,
    }


# -- (b) 200 concurrent tool-agent tasks over RabbitMQ -----------------------------------------------------


def _processes(children: list[Any]) -> list[Any]:
    """This process, the children and the broker (when it runs here): every CPU the run uses."""
    import psutil

    found = [psutil.Process(), *(psutil.Process(c.pid) for c in children)]
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] in ("beam.smp", "beam"):
            found.append(proc)
    return found


def _cpu_s(processes: list[Any]) -> float:
    total = 0.0
    for proc in processes:
        try:
            times = proc.cpu_times()
        except Exception:  # a process that ended: its time is lost either way
            continue
        total += times.user + times.system
    return total


async def _wall(router: ReplyRouter, topic: str, n: int, processes: list[Any]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (all processes) of ``n`` tasks sent at once."""
    tasks = [AgentTask(topic=topic, prompt=f"task {i}") for i in range(n)]
    cpu = _cpu_s(processes)
    start = time.perf_counter()
    results = await asyncio.gather(*(router.request(t, timeout=120) for t in tasks))
    wall = time.perf_counter() - start
    cpu = _cpu_s(processes) - cpu
    bad = [r for r in results if not r.ok]
    assert not bad, f"{len(bad)} of {n} failed: {bad[0].error}"
    assert all(str(r.output).startswith("done: ") for r in results), results[0].output
    return wall, cpu


async def concurrent_tasks(
    sizes: list[int], reps: int, latency_s: float, log_dir: Path
) -> list[dict[str, Any]]:
    """(b): wall (and CPU) of ``n`` loop tasks and of ``n`` hand-written ones at once, for each ``n``."""
    suffix = "-" + unique("x").split("-")[1]
    env = {loop_agents.SUFFIX_ENV: suffix}
    names = ("bench-loop", "bench-hand", "bench-helper-a", "bench-helper-b")
    queues = [agent_queue_name(name + suffix) for name in names]
    biggest = max(sizes)
    found: list[dict[str, Any]] = []
    try:
        with Children(log_dir) as children:
            model = children.python("model", "bench.loop_agents", "--latency", str(latency_s))
            url = model.wait_line(READY, 60)["url"]
            worker_env = {
                **env,
                "RELAYBUS_AMQP_URL": amqp_url(),
                "RELAYBUS_LLM_PROVIDER": "openai",
                "OPENAI_BASE_URL": url,
                "RELAYBUS_MAX_CONCURRENCY": str(4 * biggest),
            }
            spec = "bench.loop_agents:"
            loop_worker = children.python(
                "worker-loop", "relaybus", "--log-level", "WARNING", "worker",
                f"{spec}LoopAgent", f"{spec}HandWritten", "--concurrency", str(2 * biggest), env=worker_env,
            )  # fmt: skip
            helpers = children.python(
                "worker-helpers", "relaybus", "--log-level", "WARNING", "worker",
                f"{spec}HelperA", f"{spec}HelperB", "--concurrency", str(4 * biggest), env=worker_env,
            )  # fmt: skip
            for queue in queues:
                await broker.wait_for_consumer(queue, timeout=90)
            processes = _processes([model, loop_worker, helpers])
            bus = await connect(amqp_url())
            try:
                async with ReplyRouter(bus) as router:
                    topics = {"loop": f"bench{suffix}.loop", "hand": f"bench{suffix}.hand"}
                    for topic in topics.values():
                        await _wall(router, topic, 20, processes)  # warm up: connections, pools
                    for n in sizes:
                        runs: dict[str, list[tuple[float, float]]] = {"loop": [], "hand": []}
                        for rep in range(reps):  # take turns, so drift on the shared machine hits both
                            for kind in ("loop", "hand") if rep % 2 == 0 else ("hand", "loop"):
                                runs[kind].append(await _wall(router, topics[kind], n, processes))
                        found.append(_summary(n, latency_s, runs))
            finally:
                await bus.close()
    finally:
        await broker.delete_queues(queues)
    return found


def _summary(n: int, latency_s: float, runs: dict[str, list[tuple[float, float]]]) -> dict[str, Any]:
    loops, hands = ([w for w, _ in runs[k]] for k in ("loop", "hand"))
    ideal_loop, ideal_hand = 3 * latency_s, 4 * latency_s
    return {
        "tasks": n,
        "latency_s": latency_s,
        "loop_wall_s": Spread.of(loops).__dict__,
        "hand_wall_s": Spread.of(hands).__dict__,
        "ideal_loop_s": ideal_loop,
        "ideal_hand_s": ideal_hand,
        "loop_vs_ideal": Spread.of([w / ideal_loop for w in loops]).__dict__,
        "hand_vs_loop": Spread.of([h / w for h, w in zip(hands, loops, strict=True)]).__dict__,
        "loop_cpu_ms_per_task": Spread.of([c / n * 1000 for _, c in runs["loop"]]).__dict__,
        "hand_cpu_ms_per_task": Spread.of([c / n * 1000 for _, c in runs["hand"]]).__dict__,
        "loop_cores_busy": Spread.of([c / w for w, c in runs["loop"]]).__dict__,
    }


# -- report -------------------------------------------------------------------------------------------------


def _fmt(spread: dict[str, Any], digits: int, unit: str = "") -> str:
    return Spread(**spread).fmt(digits, unit)


def report(data: dict[str, Any]) -> str:
    cpu = data["cpu"]
    lines = [
        "### The agent loop (issue 12)",
        "",
        f"(a) CPU per model turn: {cpu['tasks']} tasks of {cpu['turns_per_long_task']} turns against tasks "
        "of 1 turn, each extra turn a model call and a Python tool call (microseconds, median (range)):",
        "",
        "| loop, per turn | bare provider call | loop overhead per turn | target |",
        "|---|---|---|---|",
        f"| {_fmt(cpu['loop_us_per_turn'], 0)} | {_fmt(cpu['bare_provider_us_per_turn'], 0)} "
        f"| {_fmt(cpu['overhead_us_per_turn'], 0)} | < {TARGET_US:.0f} |",
        "",
        "Its parts, each measured on its own: the executor's turn (`TaskExecutor.chat`: slot, timeout,",
        "`LlmBackend.chat` with rate limiter and retries) over the bare call, on the same requests; the",
        "tool call alone (`Toolbox.call`: arguments parsed and validated, timeout, result); the loop itself",
        "(the same tasks on a model that costs nothing, less the tool call):",
        "",
        "| executor turn | tool call | loop itself |",
        "|---|---|---|",
        f"| {_fmt(cpu['executor_chat_us_per_turn'], 0)} | {_fmt(cpu['tool_call_us'], 0)} "
        f"| {_fmt(cpu['loop_alone_us_per_turn'], 0)} |",
    ]
    for wall in data.get("concurrent", []):
        lines += [
            "",
            f"(b) {wall['tasks']} concurrent tasks, each 2 model turns with 2 parallel AgentTool calls to "
            f"agents in another worker process, the fake model at {wall['latency_s']:g} s over HTTP:",
            "",
            "|  | wall (s) | ideal (s) | vs ideal | CPU per task, all processes (ms) |",
            "|---|---|---|---|---|",
            f"| agent loop (`Agent.tools`) | {_fmt(wall['loop_wall_s'], 2)} | {wall['ideal_loop_s']:.2f} "
            f"| {_fmt(wall['loop_vs_ideal'], 2, 'x')} | {_fmt(wall['loop_cpu_ms_per_task'], 1)} |",
            f"| by hand, sequential `ctx.delegate` | {_fmt(wall['hand_wall_s'], 2)} "
            f"| {wall['ideal_hand_s']:.2f} | {_fmt(wall['hand_vs_loop'], 2, 'x')} the loop's wall "
            f"| {_fmt(wall['hand_cpu_ms_per_task'], 1)} |",
            "",
            f"CPU cores busy during the loop's runs (this machine has {os.cpu_count()}): "
            f"{_fmt(wall['loop_cores_busy'], 2)}.",
        ]
    return "\n".join(lines) + "\n"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    data: dict[str, Any] = {"cpu": await cpu_per_turn(args.cpu_tasks, args.reps)}
    sizes = [n for n in args.tasks if n > 0]
    if sizes:
        log_dir = Path(tempfile.mkdtemp(prefix="relaybus-bench-loop-"))
        data["concurrent"] = await concurrent_tasks(sizes, args.reps, args.latency, log_dir)
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.agent_loop", description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--cpu-tasks", type=int, default=300, help="tasks per batch in (a)")
    parser.add_argument(
        "--tasks",
        type=int,
        nargs="+",
        default=[20, 200],
        help="concurrent tasks in (b), each size; 0 skips (b)",
    )
    parser.add_argument("--latency", type=float, default=0.2, help="the fake model's latency in (b)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench")
    args = parser.parse_args(argv)
    configure_logging(level="WARNING")
    started = time.monotonic()
    data = asyncio.run(run(args))
    data["seconds"] = round(time.monotonic() - started, 1)
    data["python"] = sys.version.split()[0]
    data["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "agent_loop.json").write_text(json.dumps(data, indent=2) + "\n")
    print(report(data), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
