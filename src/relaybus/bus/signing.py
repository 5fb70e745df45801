"""Signed messages: an HMAC key shared by callers and workers, carried as the ``relaybus-signature`` header.

``SignedBus(bus, key)`` wraps any :class:`~relaybus.bus.base.Bus`: every message it publishes gets the
header ``relaybus-signature: v1=<hex HMAC-SHA256>``, and every message it consumes (tasks, results, events,
cancels) is checked first; one with no signature or a wrong one is dead-lettered with the reason and never
reaches the handler. Give the orchestrator (caller) and the workers buses wrapped with the same key:

- a caller then accepts only results signed with the key: a forged result (anyone who can publish on the
  broker can write to a reply queue, whose name is in every task's ``reply_to``) is refused, and the real
  one is still taken when it comes;
- a worker signs its results; with ``verify=False`` it signs but still takes unsigned tasks (callers that
  do not sign yet), with ``verify=True`` (the default) it requires signed tasks too.

What is signed (:func:`canonical`): the body (SHA-256), ``message_id``, ``correlation_id``, ``reply_to``,
the routing key and the headers :data:`SIGNED_HEADERS` (schema, deadline, delegation chain, event kind). So
a signed message cannot be changed or sent elsewhere without the key; it can be *replayed* as it is (the
same task or result again), which the task-id duplicate checks of callers and workers absorb.

The key never shows: it lives in a closure of :class:`SigningKey`, not in an attribute, so it is not in
``repr``, ``str`` or ``vars()``; relaybus reads ``RELAYBUS_SIGNING_KEY`` only in the command line. Messages
in ``relaybus.dead`` are not checked (a refused message is dead-lettered there unsigned, with the reason).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from relaybus.exceptions import ConfigError
from relaybus.log import get_logger

from .base import DEAD_LETTER_QUEUE, Bus, Delivery, Handler, HeaderValue, OutgoingMessage, Subscription
from .core import BusBase, QueueDeclaration

__all__ = [
    "SIGNATURE_HEADER",
    "SIGNED_HEADERS",
    "SIGNING_KEY_ENV",
    "SignedBus",
    "SigningKey",
    "canonical",
]

SIGNATURE_HEADER = "relaybus-signature"
SIGNING_KEY_ENV = "RELAYBUS_SIGNING_KEY"
SIGNED_HEADERS = ("relaybus-schema", "relaybus-deadline", "relaybus-delegation", "relaybus-event")
"""The headers a signature covers besides the body and the routing properties."""
_VERSION = "v1"
_MIN_KEY_BYTES = 16


def canonical(message: OutgoingMessage | Delivery) -> bytes:
    """The bytes a signature is computed over: one JSON array, so that no field can bleed into another."""
    signed = [[name, _header_text(message.headers.get(name))] for name in SIGNED_HEADERS]
    fields = [
        _VERSION,
        hashlib.sha256(message.body).hexdigest(),
        message.routing_key,
        message.message_id,
        message.correlation_id,
        message.reply_to,
        signed,
    ]
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=True).encode()


def _header_text(value: HeaderValue) -> str | None:
    return None if value is None else str(value)


class SigningKey:
    """An HMAC-SHA256 key (at least 16 bytes; a ``str`` is taken as UTF-8), never shown by ``repr``."""

    __slots__ = ("_mac",)

    def __init__(self, key: bytes | str) -> None:
        raw = key.encode() if isinstance(key, str) else bytes(key)
        if len(raw) < _MIN_KEY_BYTES:
            raise ConfigError(
                f"the signing key has {len(raw)} bytes, fewer than {_MIN_KEY_BYTES}: use a long random "
                "secret, e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`"
            )

        def mac(data: bytes) -> str:
            return hmac.new(raw, data, hashlib.sha256).hexdigest()

        self._mac: Callable[[bytes], str] = mac

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SigningKey | None:
        """The key in ``$RELAYBUS_SIGNING_KEY`` of ``env``, or None when it is unset or empty."""
        value = env.get(SIGNING_KEY_ENV, "")
        return cls(value) if value else None

    def sign(self, message: OutgoingMessage) -> OutgoingMessage:
        """``message`` with its ``relaybus-signature`` header set (a previous one replaced)."""
        headers = dict(message.headers)
        headers[SIGNATURE_HEADER] = f"{_VERSION}={self._mac(canonical(message))}"
        return replace(message, headers=headers)

    def check(self, delivery: Delivery) -> str | None:
        """None when ``delivery`` carries a valid signature, else why it is refused."""
        given = delivery.headers.get(SIGNATURE_HEADER)
        if not isinstance(given, str) or not given:
            return (
                f"message {delivery.message_id!r} has no {SIGNATURE_HEADER} header and this consumer "
                "requires signed messages: publish it through a SignedBus with the shared key"
            )
        expected = f"{_VERSION}={self._mac(canonical(delivery))}"
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return (
                f"message {delivery.message_id!r} has a {SIGNATURE_HEADER} that does not match its content: "
                "it was changed after signing, or signed with another key (forged)"
            )
        return None

    def __repr__(self) -> str:
        return "SigningKey(***)"

    __str__ = __repr__


class SignedBus(BusBase):
    """A :class:`Bus` that signs what it publishes and (``verify=True``) checks what it consumes; see the
    module docstring. Every other call goes to the wrapped bus unchanged."""

    def __init__(self, bus: Bus, key: SigningKey, *, verify: bool = True) -> None:
        if not isinstance(key, SigningKey):
            raise ConfigError("SignedBus needs a SigningKey: SignedBus(bus, SigningKey(secret))")
        self.inner = bus
        self._key = key
        self.verify = verify
        self.refused = 0
        """Deliveries dead-lettered for a missing or bad signature so far."""
        self._log = get_logger(__name__)

    @property
    def url(self) -> str:
        return self.inner.url

    @property
    def is_connected(self) -> bool:
        return self.inner.is_connected

    async def connect(self) -> None:
        await self.inner.connect()

    async def close(self) -> None:
        await self.inner.close()

    async def _declare_queue(self, queue: QueueDeclaration) -> None:
        await self.inner.declare_queue(
            queue.name,
            bindings=queue.bindings,
            durable=queue.durable,
            delivery_limit=queue.delivery_limit,
            expires_s=queue.expires_s,
        )

    async def delete_queue(self, name: str) -> None:
        await self.inner.delete_queue(name)

    async def purge_queue(self, name: str) -> int:
        return await self.inner.purge_queue(name)

    async def publish(self, message: OutgoingMessage) -> None:
        await self.inner.publish(self._key.sign(message))

    async def consume(self, queue: str, handler: Handler, *, prefetch: int = 16) -> Subscription:
        if not self.verify or queue == DEAD_LETTER_QUEUE:
            return await self.inner.consume(queue, handler, prefetch=prefetch)

        async def checked(delivery: Delivery) -> None:
            reason = self._key.check(delivery)
            if reason is None:
                await handler(delivery)
                return
            self.refused += 1
            self._log.warning(
                "unsigned_message_refused", queue=queue, message_id=delivery.message_id, reason=reason
            )
            await delivery.dead_letter(reason)

        return await self.inner.consume(queue, checked, prefetch=prefetch)

    def __getattr__(self, name: str) -> Any:
        # What a particular bus offers besides the protocol (reconnect_count, queue stats, ...).
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"SignedBus({self.inner!r}, verify={self.verify})"


if TYPE_CHECKING:  # mypy checks that SignedBus implements the protocol
    _bus: type[Bus] = SignedBus
