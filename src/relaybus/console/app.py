"""``Console``: the operator's web page over the bus and the state store (``relaybus console``).

What a caller may rely on:

- Pages are rendered on the server (Jinja2, everything escaped) and kept live by Server-Sent Events and a
  small script served by the console itself: no CDN, nothing fetched from elsewhere, so it works offline.
- It reads: heartbeats (a private queue bound to ``event.relaybus.worker.*``), queue figures (passive
  declares), the state store's runs (when given one) and ``relaybus.dead`` (read and returned). It writes
  only through the actions of :mod:`relaybus.console.actions`, each confirmed and needing the operator token.
- :meth:`Console.close` ends the live streams, stops listening and closes what it opened (not the bus or the
  store it was given).
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Self

from aiohttp import web

from relaybus.bus.base import Bus, agent_queue_name
from relaybus.exceptions import UsageError
from relaybus.gateway.directory import AgentDirectory
from relaybus.state import StateStore

from .actions import Actions, CancelFunction
from .config import ConsoleConfig
from .context import ConsoleContext
from .periodic import Periodic
from .queues import NoQueueProbe, QueueProbe, QueueWatch
from .security import SECURITY_HEADERS, Guard, security_headers
from .views import ReadViews
from .work import HeartbeatCounter, WorkSampler, WorkWindow

__all__ = ["Console"]

STATIC = Path(__file__).parent / "static"


class Console:
    """The console on ``bus`` (connected), reading runs from ``store`` (open) when given one.

    ``probe`` reads queue figures (default: none; the CLI gives an :class:`AmqpQueueProbe` for RabbitMQ);
    ``cancel`` sends a cancel request (default: ``ProjectOrchestrator(bus).cancel``).
    """

    def __init__(
        self,
        bus: Bus,
        config: ConsoleConfig | None = None,
        *,
        store: StateStore | None = None,
        probe: QueueProbe | None = None,
        cancel: CancelFunction | None = None,
    ) -> None:
        self.config = config or ConsoleConfig()
        directory = AgentDirectory(bus, refresh_s=self.config.refresh_s)
        window = WorkWindow()
        self.context = ConsoleContext(
            config=self.config,
            bus=bus,
            store=store,
            directory=directory,
            queues=QueueWatch(
                probe or NoQueueProbe(),
                lambda: (agent_queue_name(a) for w in directory.workers() for a in w.agents),
                interval_s=self.config.push_s,
            ),
            window=window,
            guard=Guard(self.config.operator_token, self.config.max_body_bytes),
            stream_headers=dict(SECURITY_HEADERS),
        )
        self.sampler = (
            WorkSampler(store, window, sample_s=self.config.sample_s, sample_runs=self.config.sample_runs)
            if store is not None
            else None
        )
        self.heartbeats = HeartbeatCounter(window, directory.workers)
        self._counting = Periodic("heartbeats", self.heartbeats.sample, self.config.sample_s)
        if cancel is None:
            from relaybus.orchestrator import ProjectOrchestrator

            cancel = ProjectOrchestrator(bus).cancel  # never started: it only publishes cancel requests
        self.app = self._build(cancel)
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    def _build(self, cancel: CancelFunction) -> web.Application:
        views = ReadViews(self.context)
        actions = Actions(self.context, views, cancel)
        app = web.Application(middlewares=[security_headers], client_max_size=self.config.max_body_bytes)
        app.add_routes(
            [
                web.get("/", _to_fleet),
                web.get("/healthz", _healthz),
                web.get("/fleet", views.fleet),
                web.get("/fleet/events", views.fleet_events),
                web.get("/work", views.work),
                web.get("/work/events", views.work_events),
                web.get("/runs/{run_id}", views.run),
                web.get("/runs/{run_id}/tasks/{task_id}", views.task),
                web.post("/runs/{run_id}/cancel", actions.cancel_run),
                web.post("/tasks/{task_id}/cancel", actions.cancel_task),
                web.get("/dead", views.dead),
                web.post("/dead/purge", actions.purge),
                web.get("/dead/{message_id}", views.letter),
                web.post("/dead/{message_id}/replay", actions.replay),
                web.static("/static", STATIC, append_version=False),
            ]
        )
        return app

    @property
    def url(self) -> str:
        if self._site is None or self._runner is None:
            raise UsageError("the console is not started: await console.start() first")
        host, port = self._runner.addresses[0][:2]
        return f"http://{host}:{port}"

    async def start(self) -> None:
        """Listen to the fleet, start sampling the store, and serve on ``config.host:config.port``."""
        if self._runner is not None:
            return
        await self.context.directory.start()
        self.context.queues.start()
        if self.sampler is not None:
            self.sampler.start()
        self._counting.start()
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await self._site.start()

    async def close(self) -> None:
        self.context.closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = self._site = None
        if self.sampler is not None:
            await self.sampler.close()
        await self._counting.close()
        await self.context.directory.close()
        await self.context.queues.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


async def _to_fleet(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/fleet")


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")
