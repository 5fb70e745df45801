"""``--metrics-port`` / ``--metrics-host`` of ``relaybus worker`` and ``relaybus run``: the options and the
started ``/metrics`` + ``/healthz`` server."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from relaybus.log import get_logger

from ._common import CliError, positive_int

if TYPE_CHECKING:
    from relaybus.telemetry.health import Health
    from relaybus.telemetry.server import MetricsServer, Rendered

__all__ = ["add_metrics_options", "serve_metrics"]


def _port(text: str) -> int:
    port = positive_int(text)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"a port is 1..65535, got {port}")
    return port


def add_metrics_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics-port",
        type=_port,
        default=None,
        metavar="PORT",
        help="serve Prometheus /metrics and the /healthz probe (200 or 503) on this port (default: off)",
    )
    parser.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="address for --metrics-port (default 127.0.0.1; 0.0.0.0 in a container)",
    )


async def serve_metrics(
    args: argparse.Namespace, metrics: Rendered, health: Callable[[], Health], command: str
) -> MetricsServer:
    """The started server (a probe sees 503 until ``health`` says otherwise); a taken port is a one-line
    CliError."""
    from relaybus.telemetry.server import MetricsServer

    server = MetricsServer(metrics, health, host=args.metrics_host, port=args.metrics_port)
    try:
        await server.start()
    except OSError as exc:
        raise CliError(f"cannot serve metrics on {args.metrics_host}:{args.metrics_port}: {exc}", 1) from None
    get_logger(f"relaybus.cli.{command}").info("metrics_serving", url=server.url)
    return server
