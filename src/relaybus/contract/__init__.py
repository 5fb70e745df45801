"""The wire contract, machine-readable: the bodies' JSON Schemas and an AsyncAPI 3.0 document of the topology.

Both are generated from the code (the pydantic models, the names in :mod:`relaybus.bus.base` and
:mod:`relaybus.bus.codec`): ``relaybus schema json`` and ``relaybus schema asyncapi`` print them, and
``docs/`` keeps copies that a test compares with the code.
"""

from __future__ import annotations

from .asyncapi import asyncapi_document
from .schemas import json_schemas

__all__ = ["asyncapi_document", "json_schemas"]
