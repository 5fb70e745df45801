"""``BoundedMap``: a mapping that forgets its oldest entries past a count (and optionally a byte) limit."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from relaybus.exceptions import ConfigError

__all__ = ["BoundedMap"]

K = TypeVar("K")
V = TypeVar("V")


class BoundedMap(Generic[K, V]):
    """Keeps at most ``max_items`` entries and, when ``max_bytes`` is given, at most that sum of their sizes.

    What a caller may rely on: :meth:`put` makes its entry the newest (also when the key was there), then
    drops the oldest entries until both limits hold, calling ``on_evict(key, value)`` for each (so an
    entry bigger than ``max_bytes`` on its own leaves the map empty). :meth:`get` does not make an entry
    newer, so the order is the order of writes. A limit of 0 keeps nothing.
    """

    __slots__ = ("_bytes", "_items", "_max_bytes", "_max_items", "_on_evict", "_sizes", "get")

    def __init__(
        self,
        max_items: int,
        *,
        max_bytes: int | None = None,
        on_evict: Callable[[K, V], None] | None = None,
    ) -> None:
        if max_items < 0 or (max_bytes is not None and max_bytes < 0):
            raise ConfigError(f"a BoundedMap's limits must be >= 0, got {max_items} items, {max_bytes} bytes")
        self._items: OrderedDict[K, V] = OrderedDict()
        # Sizes beside the values (not in a tuple with them) so that ``get`` stays the dict's own.
        self._sizes: dict[K, int] | None = None if max_bytes is None else {}
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._on_evict = on_evict
        self._bytes = 0
        self.get: Callable[[K], V | None] = self._items.get
        """The value of a key, or None; a C call, as the worker looks up every task it receives."""

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    @property
    def size(self) -> int:
        """The sum of the sizes of the entries kept (0 without ``max_bytes``)."""
        return self._bytes

    def pop(self, key: K) -> V | None:
        """Remove ``key`` and return its value (None when it was not there); not an eviction."""
        if self._sizes is not None:
            self._bytes -= self._sizes.pop(key, 0)
        return self._items.pop(key, None)

    def put(self, key: K, value: V, size: int = 0) -> None:
        """Store ``value`` (of ``size``, counted against ``max_bytes``) as the newest entry, then drop the
        oldest ones until the limits hold."""
        items = self._items
        items[key] = value
        items.move_to_end(key)
        sizes = self._sizes
        if sizes is not None:
            self._bytes += size - sizes.get(key, 0)
            sizes[key] = size
        max_bytes = self._max_bytes
        while len(items) > self._max_items or (max_bytes is not None and self._bytes > max_bytes):
            old_key, old_value = items.popitem(last=False)
            if sizes is not None:
                self._bytes -= sizes.pop(old_key)
            if self._on_evict is not None:
                self._on_evict(old_key, old_value)
