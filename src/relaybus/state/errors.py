"""The errors a state store raises on purpose; they live in :mod:`relaybus.exceptions` with the rest."""

from __future__ import annotations

from relaybus.exceptions import SchemaTooNew, StateError, StoreUnavailable

__all__ = ["SchemaTooNew", "StateError", "StoreUnavailable"]
