"""``relaybus console [--port 8090] [--state-url URL] [--operator-token-env NAME]``: the operator's web page.

Fleet (live workers and agent queues), Work (a chart of the last hour and the plan runs of the state store),
dead letters; read-only unless an operator token is given: the name of an environment variable holding it
(``--operator-token-env``, default ``RELAYBUS_CONSOLE_TOKEN``), never the token itself on the command line.
SIGTERM or SIGINT stops it and it exits 0. Needs the ``console`` extra (Jinja2).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
from typing import Any

from relaybus.exceptions import ConfigError, RelaybusError
from relaybus.log import get_logger

from ._common import CliError, add_amqp_url, open_bus, positive_float, positive_int, run_async

__all__ = ["TOKEN_ENV", "register"]

TOKEN_ENV = "RELAYBUS_CONSOLE_TOKEN"  # noqa: S105 (a variable name, not a token)


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"a port is 0-65535, got {text}")
    return int(text)


def register(subparsers: Any) -> None:
    from relaybus.state import STATE_URL_ENV

    parser: argparse.ArgumentParser = subparsers.add_parser(
        "console",
        help="a web page for operators: fleet, work, runs, dead letters, cancel",
        description="Serve the operator's console: live workers and queues, the work of the last hour and "
        "the recorded plan runs (with --state-url), dead letters to replay or purge, cancel. Read-only "
        f"unless the environment variable named by --operator-token-env (default {TOKEN_ENV}) holds a token.",
    )
    add_amqp_url(parser)
    parser.add_argument(
        "--state-url",
        default=os.environ.get(STATE_URL_ENV) or None,
        metavar="URL",
        help=f"state store with the plan runs (default ${STATE_URL_ENV}; none: no runs shown)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=8090, help="port to listen on (default 8090; 0 = any)")
    parser.add_argument(
        "--operator-token-env",
        default=TOKEN_ENV,
        metavar="NAME",
        help=f"environment variable holding the operator token (default {TOKEN_ENV}); unset: read-only",
    )
    parser.add_argument(
        "--push", type=positive_float, default=2.0, metavar="SECONDS", help="live update interval (default 2)"
    )
    parser.add_argument(
        "--page-size", type=positive_int, default=50, metavar="N", help="runs per page (default 50)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_async(lambda: _serve(args))


async def _serve(args: argparse.Namespace) -> int:
    try:
        from relaybus.console import AmqpQueueProbe, Console, ConsoleConfig, NoQueueProbe
    except ImportError as exc:
        hint = f"the console needs its extra: pip install 'relaybus[console]' ({exc.name} missing)"
        raise CliError(hint) from None
    from relaybus.secrets import Secret
    from relaybus.state import open_store

    log = get_logger("relaybus.cli.console")
    token = os.environ.get(args.operator_token_env) or None
    try:
        config = ConsoleConfig(
            host=args.host,
            port=args.port,
            operator_token=Secret(token) if token else None,
            push_s=args.push,
            page_size=args.page_size,
        )
    except ConfigError as exc:
        raise CliError(f"{exc} (from ${args.operator_token_env})" if token else str(exc)) from None
    if config.read_only:
        log.info("console_read_only", hint=f"set ${args.operator_token_env} to a token to allow actions")
    bus = await open_bus(args.amqp_url)
    stack = contextlib.AsyncExitStack()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        stack.push_async_callback(bus.close)
        store = None
        if args.state_url:
            try:
                store = await open_store(args.state_url)
            except RelaybusError as exc:
                raise CliError(str(exc), 1) from None
            stack.push_async_callback(store.close)
        amqp = args.amqp_url.strip().lower().startswith(("amqp://", "amqps://"))
        probe = AmqpQueueProbe(args.amqp_url) if amqp else NoQueueProbe()
        console = Console(bus, config, store=store, probe=probe)
        try:
            await console.start()
        except OSError as exc:
            await console.close()
            raise CliError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}", 1) from None
        stack.push_async_callback(console.close)
        print(f"relaybus console listening on {console.url}", flush=True)
        await stop.wait()
    finally:
        await stack.aclose()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    return 0
