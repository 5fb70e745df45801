"""``relaybus schema asyncapi | json``: print the wire contract, generated from the code.

``asyncapi`` prints the AsyncAPI 3.0 document (YAML, or JSON with ``--format json``): channels, operations and
messages of tasks, results, events, cancels, heartbeats and dead letters, with AMQP bindings. ``json`` prints
the JSON Schemas (draft 2020-12) of the message bodies. ``docs/asyncapi.yaml`` and ``docs/schemas.json`` are
these outputs; docs/wire.md says the rest in prose.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "schema",
        help="print the wire contract (AsyncAPI 3.0 or JSON Schemas)",
        description="Print the wire contract for implementers in other languages, generated from the code.",
    )
    parser.add_argument(
        "kind",
        choices=("asyncapi", "json"),
        help="asyncapi: the AsyncAPI 3.0 document; json: the JSON Schemas",
    )
    parser.add_argument(
        "--format",
        choices=("yaml", "json"),
        default="yaml",
        help="the AsyncAPI document's format (default: %(default)s); the JSON Schemas are always JSON",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from relaybus.contract.render import asyncapi_text, json_schemas_text

    sys.stdout.write(asyncapi_text(args.format) if args.kind == "asyncapi" else json_schemas_text())
    return 0
