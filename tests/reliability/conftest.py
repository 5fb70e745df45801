"""Fixtures of the reliability suite: worker processes (``fleet``) and the broker restarter (``broker``)."""

from __future__ import annotations

from tests.agents.processes import fleet
from tests.bus.amqp_support import broker

__all__ = ["broker", "fleet"]
