"""``relaybus worker module:Class [module:Class ...]``: host agents in this process until told to stop.

SIGTERM or SIGINT (Ctrl-C): stop taking tasks, let running ones finish for up to ``--grace`` seconds, return
the rest to their queue, exit 0. A second signal returns the running tasks to their queue at once.
``--state-url URL`` (or ``$RELAYBUS_STATE_URL``) shares a state store with the other workers: each task id
runs once (see :mod:`relaybus.agents.claims`). ``--metrics-port PORT`` serves Prometheus ``/metrics`` and
the ``/healthz`` probe on ``--metrics-host``.

A broker that does not answer at start is waited for: tried again with backoff (1 s doubling to 30 s), a
``waiting_for_broker`` warning each time, SIGTERM meanwhile exits 0; ``--exit-if-down`` exits 1 at once
instead. A broker that answers and refuses (user, password, vhost) is never waited for.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
from typing import TYPE_CHECKING, Any

from relaybus.agents.claims import DEFAULT_LEASE_S
from relaybus.agents.delegation import DEFAULT_MAX_DEPTH
from relaybus.agents.worker import AgentWorker
from relaybus.exceptions import ConfigError
from relaybus.executor.config import ExecutorConfig
from relaybus.log import get_logger
from relaybus.telemetry.health import worker_health
from relaybus.telemetry.metrics import WorkerMetrics

from ._common import (
    CliError,
    add_amqp_url,
    freeze_startup_heap,
    load_agent,
    non_negative_float,
    open_bus,
    positive_float,
    positive_int,
    run_async,
)
from ._metrics import add_metrics_options, serve_metrics
from ._state import add_state_url, optional_store

if TYPE_CHECKING:
    from relaybus.bus.base import Bus

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "worker",
        help="host agents in this process (deploy them)",
        description="Host agents in this process: each consumes its queue relaybus.agent.<name> on the "
        "broker. Start more processes to scale out. SIGTERM/Ctrl-C drains in-flight tasks, then exits 0.",
    )
    parser.add_argument(
        "agents",
        nargs="+",
        metavar="module:Class",
        help="agent classes to host, e.g. examples.agents:Reviewer",
    )
    add_amqp_url(parser)
    parser.add_argument(
        "--concurrency", type=positive_int, default=16, help="tasks run at once (and prefetch); default 16"
    )
    parser.add_argument(
        "--grace",
        type=non_negative_float,
        default=30.0,
        metavar="SECONDS",
        help="on SIGTERM, how long running tasks may take to finish before they go back to the queue (30)",
    )
    parser.add_argument(
        "--heartbeat",
        type=positive_float,
        default=5.0,
        metavar="SECONDS",
        help="seconds between heartbeats on event.relaybus.worker.heartbeat (default 5)",
    )
    parser.add_argument(
        "--max-delegation-depth",
        type=positive_int,
        default=DEFAULT_MAX_DEPTH,
        metavar="N",
        help=f"refuse delegation chains longer than N hops (default {DEFAULT_MAX_DEPTH})",
    )
    add_metrics_options(parser)
    add_state_url(parser, "claim each task before it runs, so a task id runs once across workers")
    parser.add_argument(
        "--lease",
        type=positive_float,
        default=DEFAULT_LEASE_S,
        metavar="SECONDS",
        help="with --state-url: a task's claim lasts this long unless renewed (every third of it) while it "
        f"runs; a worker that died is replaced after at most this (default {DEFAULT_LEASE_S:g})",
    )
    parser.add_argument(
        "--exit-if-down",
        action="store_true",
        help="exit 1 at once when the broker does not answer, instead of waiting for it with backoff "
        "(for scripts)",
    )
    parser.set_defaults(func=run)


async def _open_bus_until_stopped(args: argparse.Namespace) -> Bus | None:
    """The bus, waiting for a broker that is down unless ``--exit-if-down``; None: SIGTERM while waiting."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    loop.add_signal_handler(signal.SIGTERM, main.cancel)
    try:
        return await open_bus(args.amqp_url, wait=not args.exit_if_down)
    except asyncio.CancelledError:
        if main.uncancel() > 0:  # not our SIGTERM: Ctrl-C (asyncio.run's) or another cancellation
            raise
        get_logger("relaybus.cli.worker").info("stopped_while_waiting_for_broker")
        return None
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def _port(text: str) -> int:
    port = positive_int(text)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"a port is 1..65535, got {port}")
    return port


def run(args: argparse.Namespace) -> int:
    return run_async(lambda: _serve(args))


async def _serve(args: argparse.Namespace) -> int:
    # Load the agents before connecting: a typo in module:Class should not wait for a broker.
    agents = [load_agent(spec) for spec in args.agents]
    # Likewise a bad LLM setting: refuse to start rather than take tasks only to fail each of them.
    try:
        llm = ExecutorConfig.from_env(os.environ).provider
    except ConfigError as exc:
        raise CliError(f"{exc} (from the environment; fix the variable or unset it)") from None
    log = get_logger("relaybus.cli.worker")
    bus = await _open_bus_until_stopped(args)
    if bus is None:
        return 0
    # The agents' default executor is made from these settings on first use: name them at start.
    log.info(
        "worker_starting",
        agents=[a.name for a in agents],
        llm_provider=llm.kind,
        llm_model=llm.model_name,
        event_loop=type(asyncio.get_running_loop()).__module__.split(".")[0],
    )
    stop = asyncio.Event()
    metrics = None if args.metrics_port is None else WorkerMetrics()
    worker = AgentWorker(
        bus,
        agents,
        concurrency=args.concurrency,
        grace_s=args.grace,
        heartbeat_interval_s=args.heartbeat,
        max_delegation_depth=args.max_delegation_depth,
        metrics=metrics,
        state=optional_store(args),
        lease_s=args.lease,
        llm=f"{llm.kind}/{llm.model_name}" if llm.model_name != llm.kind else llm.kind,
    )

    def on_signal(signum: int) -> None:
        # Act first, log after: logging can fail (a closed stderr pipe) and must not keep the worker alive.
        if not stop.is_set():
            stop.set()
            with contextlib.suppress(Exception):
                log.info("stop_requested", signal=signal.Signals(signum).name, grace_s=args.grace)
        else:
            returned = worker.abort_in_flight()
            with contextlib.suppress(Exception):
                log.warning(
                    "stop_now_requested", signal=signal.Signals(signum).name, returned_to_queue=returned
                )

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        async with contextlib.AsyncExitStack() as stack:
            if metrics is not None:
                server = await serve_metrics(args, metrics, lambda: worker_health(bus, worker), "worker")
                stack.push_async_callback(server.close)
            async with worker:
                freeze_startup_heap()
                await stop.wait()
    finally:
        await bus.close()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    return 0
