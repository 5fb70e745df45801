"""``Gateway``: the aiohttp application in front of the bus, its routes, and its start and graceful stop.

What a caller may rely on:

- One process, one event loop: HTTP requests waiting for tasks are coroutines on the loop, awaiting futures
  of one :class:`~relaybus.ProjectOrchestrator` (one reply queue), so thousands wait at once without threads.
- Every route but the agent cards, ``/openapi.json``, ``/docs`` and ``/healthz`` needs a bearer token when
  tokens are configured (:mod:`relaybus.gateway.auth`). Errors are ``application/problem+json`` (REST) or
  JSON-RPC error objects (A2A); an unexpected exception is a 500 that says nothing of its internals.
- :meth:`Gateway.close` stops accepting connections, ends waits and streams at once (a waiting ``POST``
  answers 202, a stream ends; the tasks go on on their workers), gives requests in progress ``grace_s`` to
  finish, then stops listening to the bus. The gateway itself makes no outgoing HTTP call.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from aiohttp import web

from relaybus.bus.base import Bus
from relaybus.bus.codec import DEFAULT_MAX_BODY_BYTES
from relaybus.exceptions import ConfigError, UsageError
from relaybus.log import get_logger
from relaybus.orchestrator import DEFAULT_TIMEOUT_S, ProjectOrchestrator
from relaybus.secrets import Secret

from .a2a import A2AEndpoint
from .auth import BearerAuth
from .cards import agent_card, gateway_card
from .directory import DEFAULT_REFRESH_S, AgentDirectory
from .openapi import docs_page, openapi_document
from .rest import RestHandlers
from .tasks import DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_RESULTS, DEFAULT_RESULT_TTL_S, TaskRegistry
from .web import HttpProblem, json_response, problem_response

__all__ = ["Gateway", "GatewayConfig"]

_PUBLIC_PATHS = frozenset({"/.well-known/agent-card.json", "/openapi.json", "/docs", "/healthz"})
_CARD_SUFFIX = "/.well-known/agent-card.json"
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class GatewayConfig:
    """How the gateway listens and what it keeps. ``port=0`` picks a free port (see :attr:`Gateway.url`).

    ``public_url`` is the base URL clients reach the gateway at (it goes into the agent cards); by default
    ``http://<host>:<port>``. ``task_timeout_s`` is the deadline of a task that sets none; ``max_wait_s``
    caps ``?wait``. ``tokens`` empty = no authentication (the CLI warns).
    """

    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str | None = None
    tokens: tuple[Secret, ...] = ()
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    result_ttl_s: float = DEFAULT_RESULT_TTL_S
    max_results: int = DEFAULT_MAX_RESULTS
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    max_wait_s: float = 300.0
    task_timeout_s: float = DEFAULT_TIMEOUT_S
    refresh_s: float = DEFAULT_REFRESH_S
    grace_s: float = 10.0
    keepalive_s: float = 15.0

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0-65535, got {self.port!r}")
        if self.max_body_bytes < 1:
            raise ConfigError(f"max_body_bytes must be at least 1, got {self.max_body_bytes!r}")
        for name in ("result_ttl_s", "max_wait_s", "task_timeout_s", "refresh_s", "keepalive_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0 seconds, got {getattr(self, name)!r}")
        if not self.grace_s >= 0:
            raise ConfigError(f"grace_s must be 0 or more seconds, got {self.grace_s!r}")
        if self.public_url is not None and not self.public_url.startswith(("http://", "https://")):
            raise ConfigError(f"public_url must start with http:// or https://, got {self.public_url!r}")


class Gateway:
    """The HTTP gateway over a connected ``bus``; ``async with Gateway(bus, config):`` serves until the
    block ends. See the module docstring."""

    def __init__(self, bus: Bus, config: GatewayConfig | None = None) -> None:
        self.config = config or GatewayConfig()
        self._bus = bus
        self._orchestrator = ProjectOrchestrator(bus, default_timeout_s=self.config.task_timeout_s)
        self.registry = TaskRegistry(
            self._orchestrator,
            result_ttl_s=self.config.result_ttl_s,
            max_results=self.config.max_results,
            max_in_flight=self.config.max_in_flight,
        )
        self.directory = AgentDirectory(bus, refresh_s=self.config.refresh_s)
        self._auth = BearerAuth(self.config.tokens)
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self._log = get_logger("relaybus.gateway")
        self.app = self._build_app()

    @property
    def url(self) -> str:
        """The base URL clients use (``public_url``, else where it listens); after :meth:`start`."""
        if self._url is None:
            raise UsageError("the gateway has no URL before start(); call start() or use `async with`")
        return self._url

    @property
    def is_open(self) -> bool:
        """True when no token is configured: every request is let in."""
        return self._auth.is_open

    def _build_app(self) -> web.Application:
        app = web.Application(
            client_max_size=self.config.max_body_bytes, middlewares=[self._errors, self._authenticate]
        )
        keepalive = self.config.keepalive_s
        RestHandlers(
            self.registry,
            max_body_bytes=self.config.max_body_bytes,
            max_wait_s=self.config.max_wait_s,
            keepalive_s=keepalive,
        ).add_routes(app)
        a2a = A2AEndpoint(
            self.registry,
            self.directory,
            max_body_bytes=self.config.max_body_bytes,
            wait_limit_s=self.config.task_timeout_s + 5,  # the task's own deadline ends it before this
            keepalive_s=keepalive,
        )
        app.router.add_post("/a2a", a2a.handle)
        app.router.add_post("/agents/{agent}/a2a", a2a.handle)
        app.router.add_get("/.well-known/agent-card.json", self._gateway_card)
        app.router.add_get("/agents/{agent}/.well-known/agent-card.json", self._agent_card)
        app.router.add_get("/openapi.json", self._openapi)
        app.router.add_get("/docs", self._docs)
        app.router.add_get("/healthz", self._health)
        app.on_shutdown.append(self._on_shutdown)
        return app

    # -- middlewares ---------------------------------------------------------------------------------------
    @web.middleware
    async def _errors(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except HttpProblem as problem:
            return problem_response(problem)
        except web.HTTPException as exc:  # aiohttp's own (404 no route, 405 method): the same problem form
            if exc.status < 400:
                raise
            kept = {
                k: v for k, v in exc.headers.items() if k.lower() not in ("content-type", "content-length")
            }
            return problem_response(HttpProblem(exc.status, exc.reason, headers=kept))
        except Exception:
            self._log.exception("gateway_request_failed", method=request.method, path=request.path)
            return problem_response(HttpProblem(500, "the gateway failed on this request; see its log"))

    @web.middleware
    async def _authenticate(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        path = request.path
        if path not in _PUBLIC_PATHS and not (path.startswith("/agents/") and path.endswith(_CARD_SUFFIX)):
            self._auth.check(request.headers.get("Authorization"))
        return await handler(request)

    # -- routes of its own ----------------------------------------------------------------------------------
    def _card_response(self, request: web.Request, card: dict[str, object]) -> web.Response:
        text = json.dumps(card)
        etag = '"' + hashlib.sha256(text.encode()).hexdigest()[:32] + '"'
        headers = {"ETag": etag, "Cache-Control": "max-age=10"}
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        return web.Response(text=text, content_type="application/json", headers=headers)

    async def _gateway_card(self, request: web.Request) -> web.Response:
        card = gateway_card(self.directory.agents(), self.url, secured=not self.is_open)
        return self._card_response(request, card)

    async def _agent_card(self, request: web.Request) -> web.Response:
        name = request.match_info["agent"]
        hosts = self.directory.agents().get(name)
        if hosts is None:
            raise HttpProblem(404, f"no live worker hosts an agent named {name!r}")
        return self._card_response(request, agent_card(name, hosts, self.url, secured=not self.is_open))

    async def _openapi(self, request: web.Request) -> web.Response:
        return json_response(openapi_document(self.url, secured=not self.is_open))

    async def _docs(self, request: web.Request) -> web.Response:
        page = docs_page(openapi_document(self.url, secured=not self.is_open))
        csp = "default-src 'none'; style-src 'unsafe-inline'"
        return web.Response(text=page, content_type="text/html", headers={"Content-Security-Policy": csp})

    async def _health(self, request: web.Request) -> web.Response:
        healthy = self._bus.is_connected
        body = {
            "broker": "connected" if healthy else "disconnected",
            "agents": len(self.directory.agents()),
            "in_flight": self.registry.in_flight,
            "results_kept": self.registry.retained,
        }
        return json_response(body, status=200 if healthy else 503)

    async def _on_shutdown(self, app: web.Application) -> None:
        self.registry.stop_waiting()

    # -- life cycle ----------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Listen to the bus (results, heartbeats) and start serving HTTP."""
        if self._runner is not None:
            raise UsageError("the gateway is started already")
        await self._orchestrator.start()
        await self.directory.start()
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=self.config.grace_s)
        await runner.setup()
        site = web.TCPSite(runner, self.config.host, self.config.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            await self.directory.close()
            await self._orchestrator.close()
            raise ConfigError(
                f"cannot listen on {self.config.host}:{self.config.port}: {exc.strerror or exc}"
            ) from None
        self._runner = runner
        port = runner.addresses[0][1] if self.config.port == 0 else self.config.port
        host = self.config.host if ":" not in self.config.host else f"[{self.config.host}]"
        self._url = (self.config.public_url or f"http://{host}:{port}").rstrip("/")
        self._log.info("gateway_listening", url=self._url, open=self.is_open)

    async def close(self) -> None:
        """Stop gracefully (see the module docstring); idempotent."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        await runner.cleanup()
        await self.registry.close()
        await self.directory.close()
        await self._orchestrator.close()
        self._log.info("gateway_stopped")

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
