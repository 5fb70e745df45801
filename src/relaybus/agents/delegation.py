"""Delegation chains: which agents handed a task on, carried in the ``relaybus-delegation`` header.

The header holds the names of the agents that delegated, outermost first: when A delegates to B and B to C,
C receives ``"A,B"``. A chain is refused (a :class:`~relaybus.DelegationError`) when it would reach an agent
already in it (a loop) or grow past ``max_depth`` hops, so a mis-wired set of agents fails with a clear
message instead of running forever.
"""

from __future__ import annotations

from collections.abc import Mapping

from relaybus.bus.base import DELEGATION_HEADER, HeaderValue
from relaybus.exceptions import DelegationError
from relaybus.messages import NAME_RE

__all__ = ["DEFAULT_MAX_DEPTH", "check_incoming", "check_outgoing", "format_chain", "parse_chain"]

DEFAULT_MAX_DEPTH = 8
"""Delegation hops allowed by default: A -> B is one hop."""
_MAX_HEADER_CHARS = 4096


def format_chain(chain: tuple[str, ...]) -> str:
    return ",".join(chain)


def _arrow(chain: tuple[str, ...]) -> str:
    return " -> ".join(chain)


def parse_chain(headers: Mapping[str, HeaderValue]) -> tuple[str, ...]:
    """The delegation chain of a received task (empty when it was not delegated).

    Raises DelegationError for a header that is too long or holds something that is not an agent name.
    """
    raw = headers.get(DELEGATION_HEADER)
    if raw is None or raw == "":
        return ()
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    text = str(raw)
    if len(text) > _MAX_HEADER_CHARS:
        raise DelegationError(
            f"header {DELEGATION_HEADER!r} is {len(text)} characters, over {_MAX_HEADER_CHARS}"
        )
    names = tuple(part.strip() for part in text.split(","))
    for name in names:
        if not NAME_RE.match(name):
            raise DelegationError(f"header {DELEGATION_HEADER!r} holds {name!r}, which is not an agent name")
    return names


def check_incoming(chain: tuple[str, ...], agent: str, max_depth: int) -> None:
    """Refuse to run a task for ``agent`` that arrived through ``chain`` if that is a loop or too deep."""
    if agent in chain:
        raise DelegationError(
            f"delegation loop: {_arrow((*chain, agent))}; agent {agent!r} is already working on this chain, "
            "so running it again would never end. Route the sub-task to another agent or handle it locally"
        )
    if len(chain) > max_depth:
        raise DelegationError(
            f"delegation chain {_arrow((*chain, agent))} has {len(chain)} hops, over the limit of "
            f"{max_depth}; flatten the chain or raise max_delegation_depth on the workers"
        )


def check_outgoing(
    chain: tuple[str, ...], sender: str, target: str | None, max_depth: int
) -> tuple[str, ...]:
    """The chain to send with a task ``sender`` delegates; raise DelegationError if it is refused already.

    ``target`` is the addressed agent, if any (a task routed by topic can only be checked on receipt).
    """
    new_chain = (*chain, sender)
    if target is not None and target in new_chain:
        raise DelegationError(
            f"delegation loop: {_arrow((*new_chain, target))}; agent {target!r} is already working on this "
            "chain. Route the sub-task to another agent or handle it locally"
        )
    if len(new_chain) > max_depth:
        raise DelegationError(
            f"delegation chain {_arrow(new_chain)} -> ... would have {len(new_chain)} hops, over the limit "
            f"of {max_depth}; flatten the chain or raise max_delegation_depth on the workers"
        )
    return new_chain
