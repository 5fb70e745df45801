"""Runs the demo plan: in this process on a ``MemoryBus``, or on a broker with one worker process per agent.

The command line (``relaybus demo``) picks the executor and the environment; this module only runs things.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Self
from uuid import uuid4

from relaybus.agents.worker import AgentWorker
from relaybus.bus.base import Bus, Delivery
from relaybus.bus.codec import HEARTBEAT_ROUTING_KEY, decode_heartbeat, encode_ping
from relaybus.bus.memory import MemoryBus
from relaybus.exceptions import InvalidMessage, RelaybusError
from relaybus.executor.protocol import Executor
from relaybus.log import get_logger
from relaybus.messages import TaskEvent
from relaybus.orchestrator import PlanResult, ProgressCallback, ProjectOrchestrator

from .agents import DEMO_AGENTS, Editor
from .project import demo_plan

__all__ = ["WorkerProcesses", "agent_specs", "run_in_memory", "run_on_bus"]

_log = get_logger("relaybus.demo")


def agent_specs() -> list[str]:
    """``module:Class`` of every demo agent, as ``relaybus worker`` takes them."""
    return [f"{cls.__module__}:{cls.__qualname__}" for cls in DEMO_AGENTS]


async def run_in_memory(
    executor: Executor,
    *,
    editor_executor: Executor | None = None,
    on_progress: ProgressCallback | None = None,
    default_model: str | None = None,
    concurrency: int = 32,
    on_event: Callable[[TaskEvent], None] | None = None,
) -> PlanResult:
    """The demo plan with every agent hosted in this process on a fresh ``MemoryBus``; the editor in a worker
    of its own on ``editor_executor`` when given (its model, e.g. the scripted one), else on ``executor``."""
    others = [cls() for cls in DEMO_AGENTS if editor_executor is None or cls is not Editor]
    async with MemoryBus() as bus, AsyncExitStack() as stack:
        await stack.enter_async_context(AgentWorker(bus, others, executor=executor, concurrency=concurrency))
        if editor_executor is not None:
            editor = AgentWorker(bus, [Editor()], executor=editor_executor, concurrency=concurrency)
            await stack.enter_async_context(editor)
        return await run_on_bus(bus, on_progress=on_progress, default_model=default_model, on_event=on_event)


async def run_on_bus(
    bus: Bus,
    *,
    on_progress: ProgressCallback | None = None,
    default_model: str | None = None,
    on_event: Callable[[TaskEvent], None] | None = None,
) -> PlanResult:
    """The demo plan on ``bus``, whose workers must already be running; a fresh run id each time.
    ``on_event`` streams the tasks (the reviewer's answer, the writers' text, the editor's tool calls)."""
    async with ProjectOrchestrator(bus, default_model=default_model) as orchestrator:
        plan = demo_plan(run_id=uuid4().hex)
        return await orchestrator.run_plan(plan, on_progress=on_progress, on_event=on_event)


class WorkerProcesses:
    """``relaybus worker`` child processes, one per entry of ``groups`` (each a list of ``module:Class``).

    ``async with`` starts them; :meth:`wait_ready` returns once each has announced its agents on the bus;
    leaving the block sends SIGTERM (they drain and exit) and kills any still alive after ``stop_timeout_s``.
    ``env`` is the whole environment of the children: it carries ``RELAYBUS_AMQP_URL`` (never the command
    line, where other users of the host could read a password) and the LLM settings; ``env_of`` adds
    variables for the child whose group starts with a given spec (e.g. another LLM for one agent).
    """

    def __init__(
        self,
        groups: Sequence[Sequence[str]],
        *,
        env: Mapping[str, str],
        env_of: Mapping[str, Mapping[str, str]] | None = None,
        concurrency: int = 16,
        log_level: str = "WARNING",
        stop_timeout_s: float = 15.0,
    ) -> None:
        self._groups = [list(g) for g in groups]
        self._env = dict(env)
        self._env_of = {spec: dict(extra) for spec, extra in (env_of or {}).items()}
        self._concurrency = concurrency
        self._log_level = log_level
        self._stop_timeout_s = stop_timeout_s
        self.processes: list[asyncio.subprocess.Process] = []
        self._stderr: list[deque[str]] = []
        self._readers: list[asyncio.Task[None]] = []

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    async def __aenter__(self) -> Self:
        try:
            for group in self._groups:
                argv = [
                    *("-m", "relaybus", "--log-level", self._log_level, "worker", *group),
                    *("--concurrency", str(self._concurrency), "--heartbeat", "1", "--grace", "5"),
                ]
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    *argv,
                    env={**self._env, **self._env_of.get(group[0], {})},
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.PIPE,
                )
                self.processes.append(process)
                lines: deque[str] = deque(maxlen=20)
                self._stderr.append(lines)
                self._readers.append(asyncio.create_task(_read_lines(process, lines)))
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def stop(self) -> None:
        """SIGTERM every child still running, wait for them, kill those that outlast the timeout."""
        for process in self.processes:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                await asyncio.wait_for(process.wait(), self._stop_timeout_s)
            except TimeoutError:
                _log.warning("demo_worker_killed", pid=process.pid)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)

    def _check_alive(self) -> None:
        for process, lines in zip(self.processes, self._stderr, strict=True):
            if process.returncode is not None:
                tail = " | ".join(lines) or "no output"
                raise RelaybusError(
                    f"demo worker process {process.pid} exited with code {process.returncode}: {tail}"
                )

    async def wait_ready(self, bus: Bus, timeout_s: float = 60.0) -> None:
        """Return once every child announced its agents (a heartbeat); raise if one dies or time runs out."""
        expected = set(self.pids)
        ready: set[int] = set()
        queue = f"relaybus.demo.ready.{uuid4().hex}"

        async def on_beat(delivery: Delivery) -> None:
            with contextlib.suppress(InvalidMessage):
                beat = decode_heartbeat(delivery.body, delivery.headers, content_type=delivery.content_type)
                if beat.pid in expected and beat.status == "running":
                    ready.add(beat.pid)
            await delivery.ack()

        await bus.declare_queue(queue, bindings=[HEARTBEAT_ROUTING_KEY], durable=False)
        subscription = await bus.consume(queue, on_beat)
        try:
            deadline = time.monotonic() + timeout_s
            while len(ready) < len(expected):
                self._check_alive()
                if time.monotonic() > deadline:
                    raise RelaybusError(
                        f"the demo workers did not report ready within {timeout_s:g}s "
                        f"({len(ready)} of {len(expected)} did); is the broker slow or overloaded?"
                    )
                await bus.publish(encode_ping())
                await asyncio.sleep(0.3)
        finally:
            await subscription.cancel()
            await bus.delete_queue(queue)
        _log.debug("demo_workers_ready", pids=self.pids)


async def _read_lines(process: asyncio.subprocess.Process, lines: deque[str]) -> None:
    # Drain the child's stderr so it never blocks on a full pipe; keep the last lines to explain a failure.
    assert process.stderr is not None
    while raw := await process.stderr.readline():
        lines.append(raw.decode("utf-8", "replace").rstrip()[:500])
