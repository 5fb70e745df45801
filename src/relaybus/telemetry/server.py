"""``MetricsServer``: serves ``/metrics`` (Prometheus text) and ``/healthz`` (200 or 503) over aiohttp."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Protocol, Self

from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from relaybus.exceptions import ConfigError, UsageError

from .health import Health

__all__ = ["MetricsServer"]


class Rendered(Protocol):
    """Metrics that render their Prometheus text (:class:`WorkerMetrics`, :class:`PlanMetrics`)."""

    def render(self) -> bytes: ...


class MetricsServer:
    """HTTP on ``host:port`` (``port`` 0: any free port; :attr:`port` says which after :meth:`start`).

    ``GET /metrics``: the text of ``metrics``'s registry. ``GET /healthz``: 200 ``ok`` when ``health()``
    says so, else 503 with its reason, as plain text (what container and Kubernetes probes read).
    """

    def __init__(
        self, metrics: Rendered, health: Callable[[], Health], *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        if not 0 <= port <= 65535:
            raise ConfigError(f"metrics port must be 0..65535, got {port}")
        self._metrics = metrics
        self._health = health
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        """The port listened on (the one the system chose when 0 was asked for)."""
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        """Listen; raises ``OSError`` when the address is taken, :class:`UsageError` when started already."""
        if self._runner is not None:
            raise UsageError("this MetricsServer was started already")
        app = web.Application()
        app.router.add_get("/metrics", self._serve_metrics)
        app.router.add_get("/healthz", self._serve_health)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        if self._port == 0:
            self._port = runner.addresses[0][1]

    async def close(self) -> None:
        """Stop listening (idempotent)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _serve_metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self._metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _serve_health(self, request: web.Request) -> web.Response:
        health = self._health()
        return web.Response(text=health.reason + "\n", status=200 if health.ok else 503)
