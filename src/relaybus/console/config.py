"""``ConsoleConfig``: where the console listens, who may act, and the limits it keeps."""

from __future__ import annotations

from dataclasses import dataclass

from relaybus.exceptions import ConfigError
from relaybus.secrets import Secret

__all__ = ["DEFAULT_PORT", "ConsoleConfig"]

DEFAULT_PORT = 8090


@dataclass(frozen=True)
class ConsoleConfig:
    """How the console listens and what it keeps. ``port=0`` picks a free port (see ``Console.url``).

    ``operator_token`` None: read-only (every action is refused). ``max_body_bytes`` caps a form (a replay
    with a corrected body is the largest). ``push_s``: how often the live views are pushed over SSE;
    ``refresh_s``: how often every worker is asked for a heartbeat. ``page_size``: runs per page.
    ``dead_letter_limit``: how many dead letters a page reads at most; ``dead_letter_idle_s``: how long it
    waits for the next one. ``sample_s``: how often the state store is read for the Work chart.
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    operator_token: Secret | None = None
    max_body_bytes: int = 1024 * 1024
    push_s: float = 2.0
    refresh_s: float = 10.0
    page_size: int = 50
    dead_letter_limit: int = 200
    dead_letter_idle_s: float = 0.3
    sample_s: float = 5.0
    sample_runs: int = 200

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0-65535, got {self.port!r}")
        for name in ("max_body_bytes", "page_size", "dead_letter_limit", "sample_runs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        for name in ("push_s", "refresh_s", "dead_letter_idle_s", "sample_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0 seconds, got {getattr(self, name)!r}")
        token = self.operator_token
        if token is not None and len(token.reveal()) < 16:
            raise ConfigError("the operator token is shorter than 16 characters: use a long random one")

    @property
    def read_only(self) -> bool:
        return self.operator_token is None
