"""The errors a state store raises on purpose, all :class:`~relaybus.exceptions.RelaybusError` s."""

from __future__ import annotations

from relaybus.exceptions import RelaybusError

__all__ = ["SchemaTooNew", "StateError", "StoreUnavailable"]


class StateError(RelaybusError):
    """A state store could not do what was asked."""


class StoreUnavailable(StateError):
    """The store could not be reached (at start, or mid-run); the message names its URL, password masked.

    Mid-run it is transient: callers retry with backoff rather than run a task unclaimed.
    """


class SchemaTooNew(StateError):
    """The store's schema was written by a newer relaybus than this one; this one refuses to touch it."""
