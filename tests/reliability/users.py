"""RabbitMQ users of a test's own (created on its vhost, deleted afterwards): who published a message."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.bus.amqp_support import rabbitmqctl

__all__ = ["Users", "users"]


@dataclass(frozen=True)
class Users:
    """URLs of the vhost as the caller (guest), the victim agent's worker and the attacker."""

    caller: str
    worker: str
    worker_user: str
    attacker: str


def _url(base: str, user: str, password: str) -> str:
    parts = urlsplit(base)
    netloc = f"{user}:{password}@{parts.hostname}:{parts.port or 5672}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@pytest.fixture
async def users(amqp_vhost_url: str) -> AsyncIterator[Users]:
    vhost = urlsplit(amqp_vhost_url).path.lstrip("/")
    tag = uuid.uuid4().hex[:8]
    made: dict[str, str] = {}
    try:
        for role in ("worker", "attacker"):
            user, password = f"relaybus-wt-sec-{role}-{tag}", secrets.token_hex(12)
            await rabbitmqctl("add_user", user, password)
            made[role] = user
            await rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
            made[role + "_password"] = password
        yield Users(
            caller=amqp_vhost_url,
            worker=_url(amqp_vhost_url, made["worker"], made["worker_password"]),
            worker_user=made["worker"],
            attacker=_url(amqp_vhost_url, made["attacker"], made["attacker_password"]),
        )
    finally:
        for role in ("worker", "attacker"):
            if role in made:
                await rabbitmqctl("delete_user", made[role])
