"""``relaybus dlq list | replay | purge``: see dead letters with their reasons, send them back, drop them."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.table import Table

from relaybus.dlq import MAX_BATCH, list_dead_letters, purge_dead_letters, replay_dead_letters

from ._common import BadUsage, add_amqp_url, open_bus, positive_float, positive_int, run_async
from ._render import make_console

__all__ = ["register"]

_MAX_FIXED_BODY = 1024 * 1024


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "dlq",
        help="inspect and recover dead letters (relaybus.dead)",
        description="Dead letters are messages relaybus refused or gave up on, each with its reason, kept "
        "in the queue relaybus.dead. list shows them, replay sends them back where they came from, purge "
        "drops them. relaybus dlq COMMAND --help describes each.",
    )
    sub = parser.add_subparsers(dest="dlq_command", metavar="COMMAND", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        add_amqp_url(p)
        p.add_argument(
            "--limit",
            type=positive_int,
            default=100,
            metavar="N",
            help=f"look at up to this many dead letters (default 100, at most {MAX_BATCH})",
        )
        p.add_argument(
            "--idle",
            type=positive_float,
            default=1.0,
            metavar="SECONDS",
            help="stop reading once no letter arrived for this long (default 1)",
        )

    p_list = sub.add_parser(
        "list",
        help="show dead letters with their reasons (they stay in the queue)",
        description="Show the first --limit dead letters: message id, reason, the queue it died in, routing "
        "key and size. Reading them leaves them in the queue.",
    )
    common(p_list)
    p_list.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    p_list.set_defaults(func=_run_list)

    p_replay = sub.add_parser(
        "replay",
        help="send dead letters back to where they came from",
        description="Publish the chosen dead letters again to the exchange and routing key they had (the "
        "queue they died in gets them back) and remove them from relaybus.dead. --body sends a corrected "
        "body instead of the dead one.",
    )
    common(p_replay)
    p_replay.add_argument(
        "--id", dest="ids", action="append", metavar="MESSAGE_ID", help="only this message (repeatable)"
    )
    p_replay.add_argument("--all", action="store_true", help="every dead letter looked at (up to --limit)")
    p_replay.add_argument(
        "--body",
        type=Path,
        metavar="FILE",
        help="send this fixed JSON body instead of the dead one (needs exactly one --id)",
    )
    p_replay.set_defaults(func=_run_replay)

    p_purge = sub.add_parser(
        "purge",
        help="drop every dead letter",
        description="Delete every message in relaybus.dead, for good. Needs --yes.",
    )
    add_amqp_url(p_purge)
    p_purge.add_argument("--yes", action="store_true", help="really drop them (required)")
    p_purge.set_defaults(func=_run_purge)


def _run_list(args: argparse.Namespace) -> int:
    async def main() -> int:
        bus = await open_bus(args.amqp_url)
        try:
            letters = await list_dead_letters(bus, limit=args.limit, idle_s=args.idle)
        finally:
            await bus.close()
        if args.json:
            for letter in letters:
                row = {
                    "message_id": letter.message_id,
                    "reason": letter.reason,
                    "queue": letter.queue,
                    "exchange": letter.exchange,
                    "routing_key": letter.routing_key,
                    "size": letter.size,
                    "preview": letter.preview,
                }
                print(json.dumps(row))
            return 0
        table = Table(title=f"{len(letters)} dead letter(s) in relaybus.dead")
        for column in ("message id", "reason", "from queue", "routing key", "bytes"):
            table.add_column(column, overflow="fold")
        for letter in letters:
            table.add_row(
                letter.message_id or "-",
                letter.reason,
                letter.queue or "-",
                letter.routing_key,
                str(letter.size),
            )
        make_console().print(table)
        return 0

    return run_async(main)


def _run_replay(args: argparse.Namespace) -> int:
    if not args.ids and not args.all:
        raise BadUsage("say which letters: --id MESSAGE_ID (repeatable) or --all")
    if args.ids and args.all:
        raise BadUsage("give either --id or --all, not both")
    body: bytes | None = None
    if args.body is not None:
        if not args.ids or len(args.ids) != 1:
            raise BadUsage("--body needs exactly one --id")
        try:
            body = args.body.read_bytes()
        except OSError as exc:
            print(f"relaybus: error: cannot read --body {args.body}: {exc.strerror}", file=sys.stderr)
            return 2
        if len(body) > _MAX_FIXED_BODY:
            print(f"relaybus: error: --body {args.body} is over {_MAX_FIXED_BODY} bytes", file=sys.stderr)
            return 2
        try:
            json.loads(body)
        except ValueError as exc:
            print(f"relaybus: error: --body {args.body} is not valid JSON ({exc})", file=sys.stderr)
            return 2

    async def main() -> int:
        bus = await open_bus(args.amqp_url)
        try:
            report = await replay_dead_letters(
                bus, ids=args.ids, limit=args.limit, idle_s=args.idle, replace_body=body
            )
        finally:
            await bus.close()
        for message_id in report.replayed:
            print(f"replayed {message_id}")
        for message_id, reason in report.failed.items():
            print(f"kept {message_id}: {reason}", file=sys.stderr)
        missing = set(args.ids or ()) - set(report.replayed) - set(report.failed)
        for message_id in sorted(missing):
            print(f"not found {message_id} (among the first {args.limit} dead letters)", file=sys.stderr)
        if not report.replayed and not report.failed and not missing:
            print("no dead letters")
        return 1 if report.failed or missing else 0

    return run_async(main)


def _run_purge(args: argparse.Namespace) -> int:
    if not args.yes:
        raise BadUsage("purge drops every dead letter for good; add --yes")

    async def main() -> int:
        bus = await open_bus(args.amqp_url)
        try:
            count = await purge_dead_letters(bus)
        finally:
            await bus.close()
        print(f"purged {count} dead letter(s)")
        return 0

    return run_async(main)
