"""The operator's console (``relaybus console``): fleet, work, runs and dead letters in a browser.

Needs the ``console`` extra (``pip install 'relaybus[console]'``) for its templates (Jinja2).
"""

from .app import Console
from .config import DEFAULT_PORT, ConsoleConfig
from .queues import AmqpQueueProbe, NoQueueProbe, QueueProbe, QueueStats

__all__ = [
    "DEFAULT_PORT",
    "AmqpQueueProbe",
    "Console",
    "ConsoleConfig",
    "NoQueueProbe",
    "QueueProbe",
    "QueueStats",
]
