"""``AmqpBus``'s way to RabbitMQ: the URL and TLS settings, the robust connection, and failures in words.

- **One robust connection.** aio-pika's ``RobustConnection`` (what ``connect_robust`` builds) reconnects by
  itself and re-declares every exchange, queue, binding, QoS and consumer the bus made; relaybus adds no
  second reconnection layer. The *first* connect is not retried: :meth:`AmqpLink.open` fails within
  ``connect_timeout`` with :class:`~relaybus.ConnectionFailed` naming the URL (password masked) and the fix.
- **Several URLs** (a cluster: ``"amqp://node1,amqp://node2"`` or a list): the first that answers is used,
  and on loss the connection moves to the next (:mod:`relaybus.bus.amqp_cluster` says how and why).
- Every message worded here names the URL(s) with every password masked; the URL itself is kept in a
  :class:`~relaybus.exceptions.BrokerRefused` when the broker answered and refused (the credentials, or the
  vhost: missing or not permitted, which RabbitMQ does not tell apart on the wire).
  :class:`~relaybus.secrets.Secret`, so neither shows in ``repr`` or ``vars()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

import aio_pika
import aiormq
from aio_pika.exceptions import (
    AuthenticationError,
    ChannelClosed,
    ChannelInvalidStateError,
    ChannelNotFoundEntity,
    ChannelPreconditionFailed,
    ProbableAuthenticationError,
)
from aiormq.exceptions import ChannelAccessRefused, InvalidFrameError

from relaybus.exceptions import BrokerRefused, BusError, ConfigError, ConnectionFailed
from relaybus.log import FilteringBoundLogger
from relaybus.secrets import mask_secrets, mask_url

from .amqp_blocked import BlockedWatch
from .amqp_cluster import ClusterConnection, Endpoints, split_urls
from .core import truncate

__all__ = ["TRANSIENT", "AmqpLink", "lost_connection", "validate_amqp_url"]

_SCHEMES = ("amqp", "amqps")
_START_HINT = "start RabbitMQ (rabbitmq-server -detached) or pass --amqp-url / RELAYBUS_AMQP_URL"
_URL_HINT = "use amqp://user:password@host:5672/vhost (or amqps:// for TLS)"
TRANSIENT = (
    aiormq.exceptions.AMQPConnectionError,
    ChannelInvalidStateError,
    ConnectionError,
    OSError,
    RuntimeError,  # aiormq's "Writer is None" while the transport is being replaced
    TimeoutError,
)
"""Errors that mean "the connection or channel went away", not "the broker refused this": worth waiting for
aio-pika to restore the connection and trying again."""


def lost_connection(exc: BaseException) -> bool:
    """Whether ``exc`` means the connection went away: one of :data:`TRANSIENT`, or a ``CancelledError`` in
    a task that nobody cancelled (aiormq cancels the pending confirms of a connection it found stuck, as in
    a network partition)."""
    if isinstance(exc, asyncio.CancelledError):
        task = asyncio.current_task()
        return task is not None and task.cancelling() == 0
    return isinstance(exc, TRANSIENT)


def _refusal(exc: BaseException) -> bool:
    """Whether RabbitMQ answered and refused the connection (credentials or vhost), as opposed to not
    answering: worth telling apart, since only an unanswered connect is worth trying again."""
    return isinstance(exc, AuthenticationError | ProbableAuthenticationError) or _vhost_refused(exc)


def _vhost_refused(exc: BaseException) -> bool:
    """Whether ``exc`` is aiormq's account of RabbitMQ closing the connection in answer to Connection.Open."""
    text = str(exc)
    return isinstance(exc, InvalidFrameError) and "Connection.OpenOk" in text and "Connection.Close" in text


CLOSE_STEP_S = 10.0
"""The longest :meth:`AmqpBus.close` waits on each of its steps (running handlers, the broker's close-ok)."""


async def close_connection(conn: aio_pika.abc.AbstractConnection, log: FilteringBoundLogger) -> None:
    """Close ``conn``, waiting :data:`CLOSE_STEP_S` at most for the broker (one restarting may never answer):
    a close always returns. Errors are the connection going anyway, so they are not raised."""
    try:
        async with asyncio.timeout(CLOSE_STEP_S):
            await conn.close()
    except TimeoutError:
        log.warning("amqp_close_timeout", waited_s=CLOSE_STEP_S)
        return
    except Exception as exc:  # already lost: nothing left to close
        log.debug("amqp_close_error", error=repr(exc)[:200])
    log.info("amqp_closed")


def validate_amqp_url(url: str) -> None:
    """Raise :class:`ConfigError` (password masked) unless ``url`` is a usable amqp:// or amqps:// URL."""
    shown = mask_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"invalid AMQP URL {shown!r}: {mask_secrets(str(exc))}; {_URL_HINT}") from None
    if parts.scheme not in _SCHEMES:
        raise ConfigError(f"invalid AMQP URL {shown!r}: scheme must be amqp or amqps; {_URL_HINT}")
    if not parts.hostname:
        raise ConfigError(f"invalid AMQP URL {shown!r}: no host; {_URL_HINT}")
    if port == 0:
        raise ConfigError(f"invalid AMQP URL {shown!r}: port 0; {_URL_HINT}")


def _login(url: str) -> str | None:
    parts = urlsplit(url)
    if "auth=external" in parts.query.lower():
        return None
    return unquote(parts.username) if parts.username else "guest"  # aio-pika's default login


class AmqpLink:
    """Where one ``AmqpBus`` connects and how: opens its connection, watches it, words what goes wrong."""

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        ssl_context: ssl.SSLContext | None,
        ca_file: str | None,
        cert_file: str | None,
        key_file: str | None,
        connection_name: str,
        log: FilteringBoundLogger,
    ) -> None:
        urls = split_urls(url)
        for one in urls:
            validate_amqp_url(one)
        self.endpoints = Endpoints(urls, self._tls_context)
        """Where this bus may connect, in order (one URL, or the nodes of a cluster)."""
        self.url = self.endpoints.shown
        """The URL(s) with every password masked."""
        self._tls = any(urlsplit(one).scheme == "amqps" for one in urls)
        if (ssl_context or ca_file or cert_file) and not self._tls:
            raise ConfigError(f"TLS options given for {self.url!r}: use an amqps:// URL to connect over TLS")
        # Every node of a cluster has the same users and virtual hosts: the first URL says which.
        self.vhost = unquote(urlsplit(urls[0]).path[1:]) or "/"
        """The virtual host the URL names (``/`` when it names none)."""
        self.login = _login(urls[0])
        """The user this connection logs in as (what RabbitMQ checks the ``user_id`` property against), or
        None when the broker decides it (``auth=external``: a TLS client certificate)."""
        self._ssl_context = ssl_context
        self._ssl_files = (ca_file, cert_file, key_file)
        self._connection_name = connection_name
        self._log = log
        self.reconnect_count = 0
        """How many times aio-pika restored the connection (with its channels and consumers) so far."""
        self.last_close: BaseException | None = None
        """Why the connection last closed; publish only sees "timed out waiting", the cause is here."""
        self._up = True
        self._watching = False
        self.blocked = BlockedWatch(log)
        """Whether RabbitMQ blocks this connection's publishing (a memory or disk alarm), and why."""

    def secrets(self) -> tuple[str, ...]:
        """What to mask in text that may quote the URL (every URL's password)."""
        return self.endpoints.secrets()

    def describe(self, exc: BaseException) -> str:
        """``exc`` in one line for an error message: its type and text, password masked, cut to 1000."""
        text = mask_secrets(str(exc), *self.secrets()).strip() or type(exc).__name__
        return truncate(f"{type(exc).__name__}: {text}")

    def _tls_context(self) -> ssl.SSLContext | None:
        if self._ssl_context is not None:
            return self._ssl_context
        if not self._tls:
            return None
        ca_file, cert_file, key_file = self._ssl_files
        try:
            context = ssl.create_default_context(cafile=ca_file)
            if cert_file:
                context.load_cert_chain(cert_file, key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot load TLS files for {self.url!r} ({self.describe(exc)}): check ca_file, cert_file "
                "and key_file"
            ) from None
        return context

    async def open(self, *, connect_timeout: float, reconnect_interval: float) -> ClusterConnection:
        """A new connected robust connection to the first URL that answers (each gets ``connect_timeout``),
        or ``ConnectionFailed`` naming every URL tried and why it failed."""
        failures: list[tuple[str, BaseException]] = []
        for index, shown in enumerate(self.endpoints.masked):
            conn = ClusterConnection(
                self.endpoints,
                index,
                client_properties={"connection_name": self._connection_name},
                reconnect_interval=reconnect_interval,
            )
            try:
                await asyncio.wait_for(conn.connect(timeout=connect_timeout), connect_timeout + 1.0)
            except (Exception, asyncio.CancelledError) as exc:
                with contextlib.suppress(Exception):
                    await conn.close()
                if isinstance(exc, asyncio.CancelledError):
                    raise
                if isinstance(exc, ConfigError):
                    raise
                failures.append((shown, exc))
                if len(self.endpoints) > 1:
                    self._log.warning("amqp_node_unreachable", node=shown, error=self.describe(exc))
                continue
            return conn
        raise self._connect_error(failures, connect_timeout) from None

    def _connect_error(
        self, failures: list[tuple[str, BaseException]], connect_timeout: float
    ) -> ConnectionFailed:
        # Refused by every node (credentials, vhost): waiting for the broker would not help.
        kind = BrokerRefused if all(_refusal(exc) for _, exc in failures) else ConnectionFailed
        if len(failures) > 1:
            causes = "; ".join(f"{shown}: {self._cause(exc, connect_timeout)}" for shown, exc in failures)
            return kind(
                f"cannot connect to RabbitMQ at any of {len(failures)} URLs ({causes}): "
                f"{self._fix(failures[0][1])}"
            )
        exc = failures[0][1]
        cause = self._cause(exc, connect_timeout)
        return kind(f"cannot connect to RabbitMQ at {self.url} ({cause}): {self._fix(exc)}")

    def _cause(self, exc: BaseException, connect_timeout: float) -> str:
        if isinstance(exc, asyncio.TimeoutError | TimeoutError):
            return f"no answer within {connect_timeout:g} s"
        if _vhost_refused(exc):  # aiormq's own words name a frame, not the problem (see _fix)
            return "it closed the connection at Connection.Open: 530 NOT_ALLOWED"
        return self.describe(exc)

    def _fix(self, exc: BaseException) -> str:
        cause = self.describe(exc)
        if isinstance(exc, AuthenticationError | ProbableAuthenticationError):
            return "check the user name and password in the URL"
        if _vhost_refused(exc):
            # RabbitMQ answers Connection.Open with Connection.Close (530 NOT_ALLOWED) both for a vhost that
            # does not exist and for one the user has no permissions on; aiormq keeps neither reply text.
            vhost, user = self.vhost, self.login or "guest"
            return (
                f"RabbitMQ refused vhost {vhost!r} to user {user!r}: the vhost does not exist or the user "
                f"has no permissions on it; see `rabbitmqctl list_vhosts` and `rabbitmqctl list_permissions "
                f"-p {vhost}`, or fix the vhost in the URL"
            )
        if isinstance(exc, ssl.SSLError) or "SSL" in cause:
            return (
                "check that the port speaks TLS (RabbitMQ's TLS port is usually 5671) and the TLS settings "
                "(ca_file, ssl_context)"
            )
        return _START_HINT

    def watch(self, conn: aio_pika.RobustConnection) -> None:
        """Count reconnections of ``conn``, log its losses and remember their cause, until :meth:`unwatch`."""
        self._watching = True
        self.blocked.attach(conn)
        conn.reconnect_callbacks.add(self._on_reconnect)
        conn.close_callbacks.add(self._on_connection_closed)

    def unwatch(self) -> None:
        """The bus is closing: a connection closing now is no outage."""
        self._watching = False

    def _on_connection_closed(self, _sender: Any, exc: BaseException | None = None, *_: Any) -> None:
        if not self._watching:
            return
        self.last_close = exc
        error = self.describe(exc) if exc else None
        if self._up:  # once per outage; aio-pika's failed reconnection attempts land here too
            self._up = False
            self._log.warning("amqp_connection_lost", error=error)
        else:
            self._log.debug("amqp_reconnect_failed", error=error)

    def _on_reconnect(self, conn: Any = None, *_: Any) -> None:
        if conn is not None:
            self.blocked.attach(conn)  # a new underlying connection
        self._up = True
        self.reconnect_count += 1
        self._log.info("amqp_reconnected", reconnects=self.reconnect_count)

    def outage(self, what: str, exc: BaseException | None, reconnect_timeout: float) -> ConnectionFailed:
        """The error of ``what`` when the connection did not come back within ``reconnect_timeout``."""
        causes = [f"last error {self.describe(exc)}"] if exc is not None else []
        closed_by = self.last_close
        if closed_by is not None and closed_by is not exc:
            causes.append(f"the connection last closed with {self.describe(closed_by)}")
        cause = f" ({'; '.join(causes)})" if causes else ""
        fix = _START_HINT
        if isinstance(closed_by, aiormq.exceptions.ConnectionInternalError):
            fix = (
                "RabbitMQ failed internally while aio-pika restored this bus's queues (see the broker log); "
                "on RabbitMQ 3.10 a stopped rabbit_fifo_dlx_sup breaks at-least-once quorum queues until "
                "`rabbitmqctl stop_app && rabbitmqctl start_app`"
            )
        return ConnectionFailed(
            f"{what}: the connection to RabbitMQ at {self.url} was not restored within "
            f"{reconnect_timeout:g} s{cause}; {fix}"
        )

    def channel_error(self, what: str, exc: ChannelClosed) -> BusError:
        """The error of ``what`` when RabbitMQ closed the channel on it (it refused the operation)."""
        text = self.describe(exc)
        if isinstance(exc, ChannelPreconditionFailed):
            return BusError(
                f"{what}: RabbitMQ refused ({text}); the queue or exchange already exists with other "
                "arguments: delete it (rabbitmqctl delete_queue NAME) or use the same settings"
            )
        if isinstance(exc, ChannelNotFoundEntity):
            return BusError(f"{what}: RabbitMQ says it does not exist ({text}); declare it first")
        if isinstance(exc, ChannelAccessRefused):
            return BusError(f"{what}: access refused ({text}); check the user's permissions on the vhost")
        return BusError(f"{what}: RabbitMQ refused ({text})")
