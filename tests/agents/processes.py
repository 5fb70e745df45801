"""Run ``relaybus worker`` as real child processes against RabbitMQ, and watch what they announce.

Each test gets its own agent-name suffix (``RELAYBUS_TEST_AGENT_SUFFIX``), so its queues are its own on a
broker that other test runs share; the fixture kills every child and deletes those queues at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from relaybus.bus.base import Bus, Delivery, agent_queue_name
from relaybus.bus.connect import connect
from relaybus.exceptions import BusError

from . import sample_agents as sa

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class WorkerProcess:
    proc: asyncio.subprocess.Process
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def worker_id(self) -> str:
        return f"{socket.gethostname()}:{self.proc.pid}"

    def signal(self, signum: int) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signum)

    async def wait(self, timeout: float = 30) -> int:
        async with asyncio.timeout(timeout):
            return await self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class Event:
    routing_key: str
    payload: Any


@dataclass
class Fleet:
    """Worker processes of one test, plus a bus connection that sees their events."""

    amqp_url: str
    suffix: str
    tmp: Path
    bus: Bus
    events: list[Event] = field(default_factory=list)
    workers: list[WorkerProcess] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def topic(self, base: str) -> str:
        return sa.topic(base, self.suffix)

    def name(self, base: str) -> str:
        return sa.name(base, self.suffix)

    async def start(
        self,
        *classes: str,
        args: tuple[str, ...] = (),
        ready: bool = True,
        log_level: str = "INFO",
        env: dict[str, str] | None = None,
        amqp_url: str | None = None,
        inside: Callable[[list[str]], list[str]] | None = None,
    ) -> WorkerProcess:
        """Start ``relaybus worker tests.agents.sample_agents:<Class> ...``; wait for its first heartbeat.

        ``env`` adds to (or overrides) this process's environment; ``log_level`` is the worker's. The broker
        URL (``amqp_url``, default the fleet's) goes in ``RELAYBUS_AMQP_URL``, never on the command line.
        ``inside`` wraps the command (e.g. to run it in a network namespace)."""
        specs = [f"tests.agents.sample_agents:{c}" for c in classes]
        log_path = self.tmp / f"worker-{len(self.workers)}.log"
        child_env = {**os.environ, "RELAYBUS_TEST_AGENT_SUFFIX": self.suffix}
        child_env.pop("PYTHONPATH", None)  # the current directory alone must make the test module importable
        child_env["RELAYBUS_AMQP_URL"] = amqp_url or self.amqp_url
        child_env.update(env or {})
        argv = [sys.executable, "-m", "relaybus", "--log-json", "--log-level", log_level, "worker", *specs]
        argv += ["--heartbeat", "1", *args]
        with log_path.open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                *(inside(argv) if inside else argv),
                cwd=REPO_ROOT,
                env=child_env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
        worker = WorkerProcess(proc, log_path)
        self.workers.append(worker)
        if ready:
            await self.wait_for(
                lambda e: (
                    e.routing_key == "event.relaybus.worker.heartbeat"
                    and e.payload.get("worker") == worker.worker_id
                ),
                what=f"a heartbeat from {worker.worker_id}",
                process=worker,
            )
        return worker

    async def wait_for(
        self,
        match: Callable[[Event], bool],
        *,
        what: str,
        count: int = 1,
        timeout: float = 30,
        process: WorkerProcess | None = None,
    ) -> list[Event]:
        """Wait until ``count`` events match; fail with the worker's log when a watched process died."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    found = [e for e in self.events if match(e)]
                    if len(found) >= count:
                        return found
                    if process is not None and process.proc.returncode is not None:
                        pytest.fail(
                            f"worker exited ({process.proc.returncode}) before {what}:\n{process.log()}"
                        )
                    self._changed.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.2):
                            await self._changed.wait()
        except TimeoutError:
            logs = "\n".join(w.log()[-3000:] for w in self.workers)
            pytest.fail(f"timed out waiting for {what}; worker logs:\n{logs}")

    async def on_event(self, delivery: Delivery) -> None:
        try:
            payload = json.loads(delivery.body)
        except ValueError:
            payload = None
        self.events.append(Event(delivery.routing_key, payload))
        self._changed.set()
        with contextlib.suppress(BusError):  # channel lost in a broker restart: the copy comes back
            await delivery.ack()


@contextlib.asynccontextmanager
async def running_fleet(amqp_url: str, tmp_path: Path, **options: Any) -> AsyncIterator[Fleet]:
    """A :class:`Fleet` on ``amqp_url`` (one URL or several: a cluster), its bus connected with ``options``;
    its workers are killed and its queues deleted at the end."""
    suffix = f"-{uuid.uuid4().hex[:8]}"
    bus = await connect(amqp_url, **options)
    watch = f"relaybus.test.watch{suffix}"
    fleet = Fleet(amqp_url=amqp_url, suffix=suffix, tmp=tmp_path, bus=bus)
    try:
        await bus.declare_queue(
            watch, bindings=("event.relaybus.worker.*", f"event.{sa.topic('#', suffix)}"), durable=False
        )
        await bus.consume(watch, fleet.on_event, prefetch=500)
        yield fleet
    finally:
        for worker in fleet.workers:
            if worker.proc.returncode is None:
                worker.proc.send_signal(signal.SIGKILL)
            await worker.proc.wait()
        for agent in sa.ALL:
            await bus.delete_queue(agent_queue_name(agent.name + suffix))
        await bus.delete_queue(watch)
        await bus.close()


@pytest.fixture
async def fleet(amqp_url: str, tmp_path: Path) -> AsyncIterator[Fleet]:
    async with running_fleet(amqp_url, tmp_path) as fleet:
        yield fleet
