"""``connect(url, **options)``: the bus a URL names, connected.

- ``memory://`` (anything after it is ignored) -> the in-process :class:`~relaybus.bus.memory.MemoryBus`;
  it takes the :class:`MemoryOptions`.
- ``amqp://user:password@host:port/vhost`` and ``amqps://...`` -> :class:`~relaybus.bus.amqp.AmqpBus`; it
  takes the :class:`AmqpOptions` (``connect_timeout``, ``reconnect_timeout``, ``ssl_context``, ``ca_file``,
  ``max_body_bytes``, ...), passed to its constructor. Several URLs (the nodes of a cluster), comma-separated
  or as a list, make one bus that connects to the first that answers and moves to the next on loss
  (:mod:`relaybus.bus.amqp_cluster`).

A malformed URL, an unknown scheme, or an option the URL's bus does not take (``close_timeout`` for RabbitMQ,
``ca_file`` for ``memory://``) raises :class:`~relaybus.ConfigError`; a broker that does not answer raises
:class:`~relaybus.ConnectionFailed` within ``connect_timeout`` (default 10 s). Both are one line that names
the URL with its password masked and says what to do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, TypedDict, Unpack, cast
from urllib.parse import urlsplit

from relaybus.exceptions import ConfigError
from relaybus.secrets import mask_secrets, mask_url

from .base import Bus

if TYPE_CHECKING:
    import ssl

    from .dead_letters import DeadLetterLimits

__all__ = ["AmqpOptions", "BusOptions", "MemoryOptions", "connect"]

_HINT = "use memory:// for the in-process bus or amqp://user:password@host:5672/vhost for RabbitMQ"


class MemoryOptions(TypedDict, total=False):
    """What ``connect("memory://", ...)`` passes to :class:`~relaybus.bus.memory.MemoryBus`."""

    max_body_bytes: int
    close_timeout: float


class AmqpOptions(TypedDict, total=False):
    """What ``connect("amqp://...", ...)`` passes to :class:`~relaybus.bus.amqp.AmqpBus` (see there)."""

    max_body_bytes: int
    connect_timeout: float
    reconnect_timeout: float
    reconnect_interval: float
    operation_timeout: float
    ssl_context: ssl.SSLContext | None
    ca_file: str | None
    cert_file: str | None
    key_file: str | None
    connection_name: str
    dead_letter_limits: DeadLetterLimits
    quorum_group_size: int | None


class BusOptions(MemoryOptions, AmqpOptions, total=False):
    """Every option :func:`connect` takes; each kind of bus takes only its own."""


_TAKES = {
    "memory://": frozenset(MemoryOptions.__optional_keys__),
    "amqp://": frozenset(AmqpOptions.__optional_keys__),
}


def _check_options(url: str, kind: str, options: Mapping[str, object]) -> None:
    """``ConfigError`` for the first option that a ``kind`` bus (``memory://``, ``amqp://``) does not take."""
    takes = _TAKES[kind]
    for name in options:
        if name in takes:
            continue
        others = [other for other, names in _TAKES.items() if name in names]
        why = f"it is an option of {others[0]} buses" if others else "no bus takes it"
        raise ConfigError(
            f"bad option {name!r} for {mask_url(url)!r} ({why}); {kind} buses take {', '.join(sorted(takes))}"
        )


async def connect(url: str | Sequence[str], **options: Unpack[BusOptions]) -> Bus:
    """Return a connected bus for ``url`` (usable as ``async with``; ``close()`` it when done)."""
    if isinstance(url, list | tuple):
        from .amqp_cluster import split_urls

        url = ",".join(split_urls(url))
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"no bus URL given: {_HINT}")
    url = url.strip()
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError as exc:
        raise ConfigError(f"invalid bus URL {mask_url(url)!r} ({mask_secrets(str(exc))}): {_HINT}") from None
    bus: Bus
    try:
        if scheme == "memory":
            from .memory import MemoryBus

            _check_options(url, "memory://", options)
            bus = MemoryBus(url, **cast(MemoryOptions, options))
        elif scheme in ("amqp", "amqps"):
            from .amqp import AmqpBus

            _check_options(url, "amqp://", options)
            bus = AmqpBus(url, **cast(AmqpOptions, options))
        else:
            shown = f"{scheme!r}" if scheme else "none"
            raise ConfigError(f"unknown bus URL scheme {shown} in {mask_url(url)!r}: {_HINT}")
    except TypeError as exc:  # an option of the wrong type that the bus's own checks did not catch
        raise ConfigError(f"bad option for {mask_url(url)!r}: {mask_secrets(str(exc))}") from None
    await bus.connect()
    return bus
