"""``relaybus gateway [--host H] [--port P] [--token-file F] ...``: serve the bus over HTTP (A2A and REST).

Tokens come from ``--token-file`` (one a line) and ``$RELAYBUS_GATEWAY_TOKENS`` (comma-separated); with none
the gateway is open to anyone who reaches it, and says so at start. SIGTERM or SIGINT stops it gracefully
(waits end, requests in progress get ``--grace`` seconds) and it exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
from pathlib import Path
from typing import Any

from relaybus.bus.codec import DEFAULT_MAX_BODY_BYTES
from relaybus.exceptions import ConfigError
from relaybus.log import get_logger

from ._common import (
    CliError,
    add_amqp_url,
    freeze_startup_heap,
    non_negative_float,
    open_bus,
    positive_float,
    positive_int,
    run_async,
)

__all__ = ["register"]


def _port(text: str) -> int:
    value = positive_int(text) if text != "0" else 0
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is 0-65535, got {text}")
    return value


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "gateway",
        help="serve the agents over HTTP: A2A and a REST API",
        description="An HTTP server in front of the bus: every live agent as an A2A agent (JSON-RPC 1.0 and "
        "0.3, agent cards), plus REST (POST /tasks, GET /tasks/{id}, SSE events, DELETE to cancel) and "
        "an OpenAPI page at /docs. SIGTERM/Ctrl-C stops it gracefully and exits 0.",
    )
    add_amqp_url(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=8080, help="port to listen on (default 8080; 0 = any)")
    parser.add_argument(
        "--public-url",
        default=None,
        metavar="URL",
        help="the base URL clients reach the gateway at, for the agent cards (default http://HOST:PORT)",
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="bearer tokens, one a line; also $RELAYBUS_GATEWAY_TOKENS (comma-separated); none = open",
    )
    parser.add_argument(
        "--result-ttl",
        type=positive_float,
        default=3600.0,
        metavar="SECONDS",
        help="how long a finished task's result stays readable (default 3600)",
    )
    parser.add_argument(
        "--max-results", type=positive_int, default=10_000, metavar="N", help="finished tasks kept (10000)"
    )
    parser.add_argument(
        "--max-in-flight",
        type=positive_int,
        default=10_000,
        metavar="N",
        help="unfinished tasks at once; beyond, 503 (default 10000)",
    )
    parser.add_argument(
        "--max-body",
        type=positive_int,
        default=DEFAULT_MAX_BODY_BYTES,
        metavar="BYTES",
        help=f"largest request body (default {DEFAULT_MAX_BODY_BYTES}, as on the bus)",
    )
    parser.add_argument(
        "--task-timeout",
        type=positive_float,
        default=300.0,
        metavar="SECONDS",
        help="deadline of a task that sets no timeout_s (default 300)",
    )
    parser.add_argument(
        "--max-wait", type=positive_float, default=300.0, metavar="SECONDS", help="largest ?wait (300)"
    )
    parser.add_argument(
        "--refresh",
        type=positive_float,
        default=30.0,
        metavar="SECONDS",
        help="how often to ask every worker for a heartbeat, for the agent cards (default 30)",
    )
    parser.add_argument(
        "--grace",
        type=non_negative_float,
        default=10.0,
        metavar="SECONDS",
        help="on SIGTERM, how long requests in progress may take to finish (default 10)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_async(lambda: _serve(args))


async def _serve(args: argparse.Namespace) -> int:
    from relaybus.gateway import Gateway, GatewayConfig, load_tokens

    log = get_logger("relaybus.cli.gateway")
    try:
        config = GatewayConfig(
            host=args.host,
            port=args.port,
            public_url=args.public_url,
            tokens=load_tokens(args.token_file, os.environ),
            max_body_bytes=args.max_body,
            result_ttl_s=args.result_ttl,
            max_results=args.max_results,
            max_in_flight=args.max_in_flight,
            max_wait_s=args.max_wait,
            task_timeout_s=args.task_timeout,
            refresh_s=args.refresh,
            grace_s=args.grace,
        )
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    if not config.tokens:
        log.warning(
            "gateway_open",
            hint="no token configured: anyone who reaches this port can run tasks; "
            "use --token-file or $RELAYBUS_GATEWAY_TOKENS",
        )
    bus = await open_bus(args.amqp_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        stop.set()
        with contextlib.suppress(Exception):  # a closed stderr must not keep the gateway alive
            log.info("stop_requested", signal=signal.Signals(signum).name, grace_s=args.grace)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        try:
            gateway = Gateway(bus, config)
            await gateway.start()
        except ConfigError as exc:
            raise CliError(str(exc), 1) from None
        try:
            print(f"relaybus gateway listening on {gateway.url}", flush=True)
            freeze_startup_heap()
            await stop.wait()
        finally:
            await gateway.close()
    finally:
        await bus.close()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    return 0
