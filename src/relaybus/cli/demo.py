"""``relaybus demo``: the sample project end to end, with no set-up.

By default everything runs in this process on the embedded ``MemoryBus`` with the offline ``echo`` LLM and a
simulated latency per call, so the parallel speed-up shows on any machine; the editor agent, whose model
calls other agents as tools, gets a scripted model (:mod:`relaybus.demo.editor_model`) with the same
latency. ``--amqp-url URL`` runs the same agents as separate ``relaybus worker`` processes (one per agent) on
that RabbitMQ and stops them at the end; the editor's process then reaches its scripted model over HTTP (a
``FakeLLMServer`` in this process). With an LLM configured in the environment (``RELAYBUS_LLM_PROVIDER``
other than ``echo``, plus its model and key variables), every agent uses it instead.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from relaybus.demo.agents import DEMO_AGENTS, Editor
from relaybus.demo.editor_model import editor_model
from relaybus.demo.project import demo_plan
from relaybus.demo.runner import WorkerProcesses, agent_specs, run_in_memory, run_on_bus
from relaybus.executor import TaskExecutor
from relaybus.executor.config import ExecutorConfig, ProviderConfig
from relaybus.orchestrator import PlanResult
from relaybus.testing import FakeLLMServer, ScriptedProvider

from ._common import AMQP_URL_ENV, CliError, non_negative_float, open_bus, run_async
from ._render import PlanProgressBar, make_console
from ._report import speedup
from ._steps import streamed_progress
from .run import add_output_options, default_model_from_env, print_results

__all__ = ["register"]

DEFAULT_LATENCY_S = 0.5


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "demo",
        help="run the sample project (planner -> writers in parallel -> reviewer) and show the speed-up",
        description="Run a sample project: a planner, five writers in parallel (each asks a researcher agent "
        "over the bus), then a reviewer. In this process on the embedded bus by default; on RabbitMQ with "
        "one worker process per agent with --amqp-url. Uses the echo LLM unless RELAYBUS_LLM_PROVIDER says "
        "otherwise.",
    )
    parser.add_argument(
        "--amqp-url",
        default=None,
        metavar="URL",
        help="run the agents as worker processes on this broker (default: everything in this process)",
    )
    parser.add_argument(
        "--latency",
        type=non_negative_float,
        default=None,
        metavar="SECONDS",
        help="simulated latency of each echo LLM call (default $RELAYBUS_ECHO_LATENCY_S, else "
        f"{DEFAULT_LATENCY_S:g})",
    )
    add_output_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_async(lambda: _demo(args))


def _llm_configured() -> bool:
    return os.environ.get("RELAYBUS_LLM_PROVIDER", "echo").strip().lower() not in ("", "echo")


def _latency(args: argparse.Namespace) -> float:
    if args.latency is not None:
        return float(args.latency)
    raw = os.environ.get("RELAYBUS_ECHO_LATENCY_S")
    if not raw:
        return DEFAULT_LATENCY_S
    try:
        return non_negative_float(raw)
    except argparse.ArgumentTypeError as exc:
        raise CliError(f"RELAYBUS_ECHO_LATENCY_S {exc}; give a number of seconds such as 0.5") from None


async def _demo(args: argparse.Namespace) -> int:
    out = make_console(stderr=args.json)  # with --json, stdout holds the JSON document alone
    latency = _latency(args)
    llm = (
        f"the LLM of RELAYBUS_LLM_PROVIDER={os.environ['RELAYBUS_LLM_PROVIDER']}"
        if _llm_configured()
        else f"the offline echo LLM ({latency:g}s per call)"
    )
    where = "worker processes on " + _masked(args.amqp_url) if args.amqp_url else "the in-process MemoryBus"
    agents = ", ".join(cls.name for cls in DEMO_AGENTS)
    out.print(f"relaybus demo: agents {agents} on {where}, with {llm}")
    out.print("plan: outline -> 5 sections written in parallel (each writer asks the researcher) -> review")
    editor = "its model" if _llm_configured() else "its scripted model"
    out.print(
        f"beside it: the editor's summary; {editor} calls the researcher and the planner as tools "
        "(in parallel, over the bus) and a Python tool"
    )
    total = len(demo_plan().tasks)
    bar = None if args.no_progress else PlanProgressBar(total, title="demo")
    if args.amqp_url:
        result = await _on_broker(args.amqp_url, latency, bar)
    else:
        result = await _in_memory(latency, bar)
    print_results(result, as_json=args.json, known=DEMO_AGENTS)
    if not args.json:
        for line in tool_call_lines(result):
            out.print(line)
    gain = speedup(result)
    if gain is not None and not args.json:
        out.print(
            f"[bold]parallel speed-up: {gain:.1f}x[/] ({result.sequential_s:.2f}s of agent work "
            f"in {result.wall_s:.2f}s)"
        )
    return 0 if result.ok else 1


def tool_call_lines(result: PlanResult) -> list[str]:
    """A line per task whose output lists the tool calls its agent loop made, grouped by model turn."""
    lines = []
    for task_id, res in result.results.items():
        calls = res.output.get("tool_calls") if isinstance(res.output, dict) else None
        if not isinstance(calls, list) or not calls:
            continue
        turns: dict[object, list[str]] = {}
        for call in calls:
            if isinstance(call, dict):
                mark = "ok" if call.get("ok") else "error"
                via = call.get("via")
                target = "Python" if via == "python" else f"agent on {via}"
                turns.setdefault(call.get("turn"), []).append(f"{call.get('tool')} ({target}) {mark}")
        for turn, made in turns.items():
            together = f"{len(made)} in parallel" if len(made) > 1 else "1 call"
            lines.append(
                f"tool calls of {result.key_of(task_id)} ({result.agent_of(task_id)}), turn {turn}, "
                f"{together}: " + ", ".join(made)
            )
    return lines


def _masked(url: str) -> str:
    from relaybus.secrets import mask_url

    return mask_url(url)


async def _in_memory(latency: float, bar: PlanProgressBar | None) -> PlanResult:
    editor_executor: TaskExecutor | None = None
    if _llm_configured():
        executor = TaskExecutor.from_env()
    else:
        executor = TaskExecutor(ExecutorConfig(provider=ProviderConfig(kind="echo", echo_latency_s=latency)))
        scripted = ScriptedProvider(editor_model, model="demo-editor", latency_s=latency)
        editor_executor = TaskExecutor(ExecutorConfig(), provider=scripted)
    async with executor, editor_executor or contextlib.nullcontext():
        on_progress, on_event = streamed_progress(bar)
        run = run_in_memory(
            executor,
            editor_executor=editor_executor,
            on_progress=on_progress,
            default_model=default_model_from_env(),
            on_event=on_event,
        )
        if bar is None:
            return await run
        with bar:
            return await run


async def _on_broker(url: str, latency: float, bar: PlanProgressBar | None) -> PlanResult:
    env = dict(os.environ)
    env[AMQP_URL_ENV] = url
    if not _llm_configured():
        env["RELAYBUS_LLM_PROVIDER"] = "echo"
        env["RELAYBUS_ECHO_LATENCY_S"] = str(latency)
    bus = await open_bus(url)  # fails in one line before any worker starts if the broker is not there
    try:
        async with _editor_model_server(latency) as editor_env:
            specs = agent_specs()
            env_of = {f"{Editor.__module__}:{Editor.__qualname__}": editor_env}
            async with WorkerProcesses([[spec] for spec in specs], env=env, env_of=env_of) as workers:
                await workers.wait_ready(bus)
                on_progress, on_event = streamed_progress(bar)
                run = run_on_bus(
                    bus, on_progress=on_progress, default_model=default_model_from_env(), on_event=on_event
                )
                if bar is None:
                    return await run
                with bar:
                    return await run
    finally:
        await bus.close()


@contextlib.asynccontextmanager
async def _editor_model_server(latency: float) -> AsyncIterator[dict[str, str]]:
    """The environment of the editor's worker process: its scripted model behind a FakeLLMServer in this
    process when no LLM is configured (nothing to add otherwise)."""
    if _llm_configured():
        yield {}
        return
    async with FakeLLMServer(answers=editor_model, latency_s=latency) as server:
        yield {
            "RELAYBUS_LLM_PROVIDER": "openai",
            "OPENAI_BASE_URL": server.openai_base_url,
            "RELAYBUS_LLM_MODEL": "demo-editor",
        }
