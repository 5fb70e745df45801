"""``--state-url`` (default ``$RELAYBUS_STATE_URL``): the state store of the commands that use one.

``relaybus worker`` and ``relaybus run`` work without a store (as they did before stores existed);
``relaybus runs`` and ``relaybus status`` read one and say how to give it when none is.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping

from relaybus.state import STATE_URL_ENV, STATE_URL_FORMS, StateStore, store_from_url

from ._common import CliError

__all__ = ["add_state_url", "optional_store", "required_store"]


def add_state_url(
    parser: argparse.ArgumentParser, purpose: str, env: Mapping[str, str] | None = None
) -> None:
    """Add ``--state-url``, defaulting to ``$RELAYBUS_STATE_URL`` (else none); ``purpose`` ends its help."""
    source = os.environ if env is None else env
    parser.add_argument(
        "--state-url",
        default=source.get(STATE_URL_ENV) or None,
        metavar="URL",
        help=f"state store, {STATE_URL_FORMS} (default ${STATE_URL_ENV}, else none): {purpose}",
    )


def optional_store(args: argparse.Namespace) -> StateStore | None:
    """The (unopened) store ``--state-url`` names, or None."""
    url = getattr(args, "state_url", None)
    return None if not url else store_from_url(url)


def required_store(args: argparse.Namespace) -> StateStore:
    """The (unopened) store ``--state-url`` names; a CliError saying how to give one when none is."""
    store = optional_store(args)
    if store is None:
        raise CliError(
            f"this command reads a state store, and none is given: pass --state-url URL or set "
            f"${STATE_URL_ENV} ({STATE_URL_FORMS}), the store your workers and `relaybus run` use"
        )
    return store
