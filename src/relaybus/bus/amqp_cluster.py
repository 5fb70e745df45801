"""Several broker URLs for one ``AmqpBus``: connect to the first node that answers, move to the next on loss.

- :func:`split_urls` reads ``"amqp://a,amqp://b"`` or a list into URLs; each keeps its own credentials and
  scheme (``amqps://`` ones use the bus's TLS settings, ``amqp://`` ones plain TCP).
- :class:`ClusterConnection` is aio-pika's ``RobustConnection`` with one change: every reconnection attempt
  goes to the next URL, round-robin, and after each full round without success the pause doubles (from
  ``reconnect_interval`` up to ``max_reconnect_interval``), with jitter so that a fleet of workers does not
  reconnect in step. Everything else is aio-pika's own restore: the same channels, exchanges, queues,
  bindings, QoS and consumers are re-declared on the new node, so the no-loss guarantees of a single-node
  reconnect hold (unacked deliveries return to their queue when the old connection dies; results are acked
  only after their publish was confirmed).

Why a layer at all: aio-pika (10.2) connects to one URL only (mosquito/aio-pika#141 is open; a multi-host
connection class was proposed in #680 and not merged). ``RobustConnection`` reads ``self.url`` and
``self.kwargs["context"]`` (the TLS context) on each attempt inside its private ``__connect_transport``; this
class overrides that one method (by its mangled name) to choose the endpoint first, and :meth:`_on_connected`
to note where it landed. ``tests/bus/test_amqp_cluster.py`` fails if a new aio-pika renames it.

The quorum queues' arguments (:func:`queue_arguments`) are here too, with their initial group size for the
cluster (:func:`quorum_group_size`: from the number of URLs) and what to do when a queue exists with another.
"""

from __future__ import annotations

import random
import re
import ssl
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import aio_pika
from aio_pika.connection import make_url

from relaybus.exceptions import ConfigError
from relaybus.secrets import Secret, mask_url

from .amqp_writes import CoalescingTransportFactory, widen_write_queue
from .base import DEAD_LETTER_EXCHANGE
from .core import QueueDeclaration

__all__ = [
    "GROUP_SIZE_ARG",
    "ClusterConnection",
    "Endpoints",
    "group_args",
    "keep_existing_group_size",
    "queue_arguments",
    "quorum_group_size",
    "split_urls",
]

GROUP_SIZE_ARG = "x-quorum-initial-group-size"
_EXISTING_GROUP_SIZE = re.compile(
    r"inequivalent arg '" + GROUP_SIZE_ARG + r"'.*?but current is (?:none|the value '(\d+)')"
)

_CONNECT_ATTEMPT = "_RobustConnection__connect_transport"
"""aio-pika's private per-attempt method that :class:`ClusterConnection` wraps (see the module docstring)."""


def split_urls(url: str | Sequence[str]) -> list[str]:
    """The URLs in ``url`` (comma-separated, or a list of strings); ``ConfigError`` if one is empty."""
    items = url.split(",") if isinstance(url, str) else list(url)
    urls: list[str] = []
    for position, item in enumerate(items, 1):
        if not isinstance(item, str):
            raise ConfigError(f"broker URL #{position} is a {type(item).__name__}, not a string")
        item = item.strip()
        if not item:
            raise ConfigError(
                f"broker URL #{position} of {len(items)} is empty: separate URLs with single commas, "
                "e.g. amqp://user:password@node1:5672/,amqp://user:password@node2:5672/"
            )
        urls.append(item)
    if not urls:
        raise ConfigError("no broker URL given: use amqp://user:password@host:5672/vhost")
    return urls


def quorum_group_size(nodes: int, configured: int | None) -> int | None:
    """``x-quorum-initial-group-size`` for a cluster of ``nodes`` URLs: ``configured`` if given, else none for
    one node (RabbitMQ's default, as before), else the cluster's size rounded down to an odd number, at most 5
    (2 nodes -> 2; 3 or 4 -> 3; 5 or more -> 5: a group of 2k+1 survives the loss of k nodes)."""
    if configured is not None:
        if isinstance(configured, bool) or not isinstance(configured, int) or configured < 1:
            raise ConfigError(f"quorum_group_size must be a whole number >= 1, got {configured!r}")
        return configured
    if nodes <= 1:
        return None
    if nodes == 2:
        return 2
    return 5 if nodes >= 5 else 3


def group_args(size: int | None) -> dict[str, Any]:
    """``{"x-quorum-initial-group-size": size}``, or nothing for ``None`` (one node: RabbitMQ's default)."""
    return {} if size is None else {GROUP_SIZE_ARG: size}


def queue_arguments(queue: QueueDeclaration, group_size: int | None) -> dict[str, Any]:
    """The ``x-`` arguments ``AmqpBus`` declares ``queue`` with (see :mod:`relaybus.bus.amqp`): durable ones
    are quorum queues with a delivery limit, at-least-once dead-lettering and ``group_size`` members."""
    args: dict[str, Any] = {"x-dead-letter-exchange": DEAD_LETTER_EXCHANGE}
    if queue.expires_s is not None:
        args["x-expires"] = max(1, round(queue.expires_s * 1000))
    if queue.durable:
        args.update(
            {
                "x-queue-type": "quorum",
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
                **group_args(group_size),
            }
        )
        if queue.delivery_limit is not None:
            args["x-delivery-limit"] = queue.delivery_limit
    return args


def keep_existing_group_size(refusal: str, arguments: dict[str, Any]) -> bool:
    """After RabbitMQ refused a queue declaration because the queue exists with another
    ``x-quorum-initial-group-size``, set ``arguments`` to the existing value and say so (``True``: declare
    again); ``False`` for any other refusal.

    RabbitMQ 3.10 checks that argument like any other on re-declaration, though it only matters when the
    queue is created: a queue made by a one-URL bus (no argument) and used by a cluster bus, or the reverse,
    keeps its members, and both buses can use it. The existing value is read from the refusal's text
    (``... but current is the value '3' of type 'byte'`` or ``... current is none``)."""
    found = _EXISTING_GROUP_SIZE.search(refusal)
    if found is None:
        return False
    existing = None if found.group(1) is None else int(found.group(1))
    if arguments.get(GROUP_SIZE_ARG) == existing:
        return False
    if existing is None:
        arguments.pop(GROUP_SIZE_ARG, None)
    else:
        arguments[GROUP_SIZE_ARG] = existing
    return True


class Endpoints:
    """The URLs one bus may connect to, in order; passwords kept as :class:`Secret`, shown masked."""

    def __init__(self, urls: Sequence[str], tls_context: Callable[[], ssl.SSLContext | None]) -> None:
        self._urls = [Secret(u) for u in urls]
        self.masked = [mask_url(u) for u in urls]
        """Each URL with its password masked."""
        self.addresses = [_address(u) for u in urls]
        """Each URL's ``host:port`` (what ``relaybus agents`` shows as a worker's node)."""
        self._tls = [urlsplit(u).scheme == "amqps" for u in urls]
        self._passwords = tuple(Secret(urlsplit(u).password or "") for u in urls)
        self._tls_context = tls_context
        self._context: ssl.SSLContext | None = None

    def __len__(self) -> int:
        return len(self._urls)

    @property
    def shown(self) -> str:
        """All URLs, masked, comma-separated (what error messages and logs name)."""
        return ", ".join(self.masked)

    def secrets(self) -> tuple[str, ...]:
        """Every URL's password, to mask in text that may quote one."""
        return tuple(p.reveal() for p in self._passwords)

    def target(self, index: int) -> tuple[Any, ssl.SSLContext | None]:
        """The aio-pika URL and TLS context of endpoint ``index``."""
        context = None
        if self._tls[index]:
            if self._context is None:
                self._context = self._tls_context()
            context = self._context
        return make_url(self._urls[index].reveal()), context


def _address(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    port = parts.port or (5671 if parts.scheme == "amqps" else 5672)
    return f"{host}:{port}"


class ClusterConnection(aio_pika.RobustConnection):
    """``RobustConnection`` that reconnects to the next of several endpoints, with backoff and jitter."""

    def __init__(
        self,
        endpoints: Endpoints,
        start: int = 0,
        *,
        reconnect_interval: float,
        max_reconnect_interval: float = 30.0,
        client_properties: dict[str, Any] | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        url, context = endpoints.target(start)
        super().__init__(
            url,
            ssl_context=context,
            client_properties=client_properties,
            reconnect_interval=reconnect_interval,
        )
        self.writes = CoalescingTransportFactory()  # one socket write per loop turn (amqp_writes)
        self.kwargs["transport_factory"] = self.writes
        self._endpoints = endpoints
        self._index = start
        self._base_interval = reconnect_interval
        self._max_interval = max(max_reconnect_interval, reconnect_interval)
        self._jitter = jitter
        self._attempts = 0  # every attempt, the first included
        self._failed = 0  # attempts since the last successful one
        self.connected_index: int | None = None
        """Which endpoint the live connection goes to (``None`` before the first connect and while down)."""

    @property
    def address(self) -> str | None:
        """``host:port`` of the node this connection is on, or ``None`` while down."""
        index = self.connected_index
        return None if index is None or not self.connected.is_set() else self._endpoints.addresses[index]

    def next_interval(self) -> float:
        """The pause after the current attempt if it fails: the base interval while trying each endpoint once,
        doubled after each full round without success (capped), then 50-100% of it (jitter)."""
        rounds = self._failed // max(1, len(self._endpoints))
        ceiling = min(self._max_interval, self._base_interval * (2 ** min(rounds, 16)))
        return float(ceiling * (0.5 + 0.5 * self._jitter()))

    async def _RobustConnection__connect_transport(self) -> None:
        if self._attempts:  # a reconnection: the next endpoint, round-robin
            self._failed += 1
            self._index = (self._index + 1) % len(self._endpoints)
        self._attempts += 1
        self.connected_index = None
        self.url, self.kwargs["context"] = self._endpoints.target(self._index)
        self.reconnect_interval = self.next_interval()
        attempt = getattr(super(), _CONNECT_ATTEMPT)
        await attempt()

    async def _on_connected(self) -> None:
        await super()._on_connected()
        if self.transport is not None:
            widen_write_queue(self.transport.connection)
        self._failed = 0
        self.connected_index = self._index
