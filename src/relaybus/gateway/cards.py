"""A2A agent cards built from the live agents: one for the gateway (every agent as a skill) and one per agent.

Each card is an A2A 1.0 card (``supportedInterfaces`` with JSON-RPC 1.0 and 0.3 on the same URL) that also
carries the 0.3 card's fields (``url``, ``protocolVersion``, ``preferredTransport``, ``security``), as the
official SDK's server does, so clients of either version find their way. The gateway's card points at
``/a2a``, where a request names its agent in ``tenant`` (or ``metadata.agent``); an agent's card points at
``/agents/<name>/a2a``, which needs no naming.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from relaybus import __version__
from relaybus.messages import WorkerHeartbeat

from .a2a_types import A2A_VERSION, A2A_VERSION_V03

__all__ = ["MEDIA_TYPES", "agent_card", "agent_path", "gateway_card"]

MEDIA_TYPES = ["text/plain", "application/json"]
_SCHEME = "bearer"


def agent_path(name: str) -> str:
    """The path under which agent ``name``'s card and endpoint live."""
    return f"/agents/{quote(name, safe='')}"


def _skill(name: str, hosts: list[WorkerHeartbeat]) -> dict[str, Any]:
    capacity = sum(beat.capacity for beat in hosts)
    return {
        "id": name,
        "name": name,
        "description": (
            f"The relaybus agent {name!r} on {len(hosts)} worker(s) ({capacity} tasks at once); a "
            "message's text parts are its prompt, its data parts (JSON objects) its input."
        ),
        "tags": ["relaybus", name],
    }


def _card(
    *, name: str, description: str, rpc_url: str, base_url: str, skills: list[dict[str, Any]], secured: bool
) -> dict[str, Any]:
    card: dict[str, Any] = {
        "name": name,
        "description": description,
        "supportedInterfaces": [
            {"url": rpc_url, "protocolBinding": "JSONRPC", "protocolVersion": A2A_VERSION},
            {"url": rpc_url, "protocolBinding": "JSONRPC", "protocolVersion": A2A_VERSION_V03},
        ],
        "version": __version__,
        "documentationUrl": f"{base_url}/docs",
        "capabilities": {"streaming": True, "pushNotifications": False, "extendedAgentCard": False},
        "defaultInputModes": MEDIA_TYPES,
        "defaultOutputModes": MEDIA_TYPES,
        "skills": skills,
        # A2A 0.3 readers
        "url": rpc_url,
        "protocolVersion": "0.3.0",
        "preferredTransport": "JSONRPC",
    }
    if secured:
        card["securitySchemes"] = {
            _SCHEME: {
                "httpAuthSecurityScheme": {"scheme": "Bearer", "description": "a token from the operator"},
                "type": "http",  # the 0.3 form of the same scheme
                "scheme": "bearer",
            }
        }
        card["securityRequirements"] = [{"schemes": {_SCHEME: {"list": []}}}]
        card["security"] = [{_SCHEME: []}]
    return card


def gateway_card(agents: dict[str, list[WorkerHeartbeat]], base_url: str, *, secured: bool) -> dict[str, Any]:
    """The card at ``/.well-known/agent-card.json``: every live agent as a skill."""
    names = ", ".join(agents) or "none yet"
    return _card(
        name="relaybus gateway",
        description=(
            f"Agents on a relaybus message bus ({names}). Name the agent of a request in `tenant` (or "
            "`metadata.agent`), or use the agent's own card at /agents/<name>/.well-known/agent-card.json."
        ),
        rpc_url=f"{base_url}/a2a",
        base_url=base_url,
        skills=[_skill(name, hosts) for name, hosts in agents.items()],
        secured=secured,
    )


def agent_card(name: str, hosts: list[WorkerHeartbeat], base_url: str, *, secured: bool) -> dict[str, Any]:
    """The card of one agent, at ``/agents/<name>/.well-known/agent-card.json``."""
    return _card(
        name=name,
        description=f"The relaybus agent {name!r}, reached through a relaybus gateway.",
        rpc_url=f"{base_url}{agent_path(name)}/a2a",
        base_url=base_url,
        skills=[_skill(name, hosts)],
        secured=secured,
    )
