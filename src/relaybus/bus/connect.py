"""``connect(url)``: the bus a URL names, connected.

- ``memory://`` (anything after it is ignored) -> the in-process :class:`~relaybus.bus.memory.MemoryBus`.
- ``amqp://user:password@host:port/vhost`` and ``amqps://...`` -> :class:`~relaybus.bus.amqp.AmqpBus`;
  ``options`` are passed to its constructor (``connect_timeout``, ``reconnect_timeout``, ``ssl_context``,
  ``ca_file``, ``max_body_bytes``, ...).

A malformed URL or an unknown scheme raises :class:`~relaybus.ConfigError`; a broker that does not answer
raises :class:`~relaybus.ConnectionFailed` within ``connect_timeout`` (default 10 s). Both are one line that
names the URL with its password masked and says what to do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from relaybus.exceptions import ConfigError
from relaybus.secrets import mask_secrets, mask_url

from .base import Bus

__all__ = ["connect"]

_HINT = "use memory:// for the in-process bus or amqp://user:password@host:5672/vhost for RabbitMQ"


async def connect(url: str, **options: Any) -> Bus:
    """Return a connected bus for ``url`` (usable as ``async with``; ``close()`` it when done)."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"no bus URL given: {_HINT}")
    url = url.strip()
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError as exc:
        raise ConfigError(f"invalid bus URL {mask_url(url)!r} ({mask_secrets(str(exc))}): {_HINT}") from None
    factory: Callable[..., Bus]
    if scheme == "memory":
        from .memory import MemoryBus

        factory = MemoryBus
    elif scheme in ("amqp", "amqps"):
        from .amqp import AmqpBus

        factory = AmqpBus
    else:
        shown = f"{scheme!r}" if scheme else "none"
        raise ConfigError(f"unknown bus URL scheme {shown} in {mask_url(url)!r}: {_HINT}")
    try:
        bus = factory(url, **options)
    except TypeError as exc:  # an option this kind of bus does not take
        raise ConfigError(f"bad option for {mask_url(url)!r}: {exc}") from None
    await bus.connect()
    return bus
