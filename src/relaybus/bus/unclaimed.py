"""Results that arrived for task ids nobody waits for yet, kept bounded in count, bytes and age.

Anyone who knows a reply queue's name (it is in every task's ``reply_to``) can send results to it, so what
a router keeps for later is capped: the oldest go first, each drop logged once as a warning.
"""

from __future__ import annotations

import collections
import time
from uuid import UUID

from structlog.typing import FilteringBoundLogger

from relaybus._bounded import BoundedMap
from relaybus.messages import ExecutionResult

__all__ = ["UnclaimedResults"]


class UnclaimedResults:
    """At most ``max_count`` results, ``max_bytes`` of their JSON, none older than ``max_age_s`` seconds."""

    def __init__(self, max_count: int, max_bytes: int, max_age_s: float, log: FilteringBoundLogger) -> None:
        self._max_count = max_count
        self._max_age_s = max_age_s
        self._log = log
        self._kept: BoundedMap[UUID, ExecutionResult] = BoundedMap(
            max_count, max_bytes=max_bytes, on_evict=self._dropped
        )
        # (arrival, id, result), oldest first: what ages out (an id claimed since is skipped).
        self._arrivals: collections.deque[tuple[float, UUID, ExecutionResult]] = collections.deque(
            maxlen=max_count
        )

    @property
    def size(self) -> int:
        """Bytes of the results kept."""
        return self._kept.size

    def __len__(self) -> int:
        return len(self._kept)

    def __contains__(self, key: UUID) -> bool:
        return key in self._kept

    def pop(self, key: UUID) -> ExecutionResult | None:
        """The result kept for ``key`` (no longer kept), or None."""
        return self._kept.pop(key)

    def put(self, key: UUID, result: ExecutionResult, size: int) -> None:
        """Keep ``result`` (``size`` bytes of JSON), first dropping what is too old."""
        now = time.monotonic()
        while self._arrivals and now - self._arrivals[0][0] > self._max_age_s:
            _, old_key, old = self._arrivals.popleft()
            if self._kept.get(old_key) is old:  # still unclaimed: too old to keep
                self._kept.pop(old_key)
                self._dropped(old_key, old)
        self._kept.put(key, result, size)
        self._arrivals.append((now, key, result))

    def _dropped(self, key: UUID, _result: ExecutionResult) -> None:
        self._log.warning(
            "unclaimed_result_dropped",
            task_id=str(key),
            max_unclaimed=self._max_count,
            hint="call expect() for the tasks you wait for, or raise max_unclaimed / max_unclaimed_bytes",
        )
