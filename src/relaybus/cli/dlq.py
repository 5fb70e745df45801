"""``relaybus dlq list | show | replay | purge``: see dead letters and why, send them back, drop them.

``list`` is a table (message id, age, the queue it died in, the reason) that wraps only on a terminal: piped,
each letter is one row however long; ``--json`` gives every field. ``show ID`` prints one whole letter (its
headers, body and a hint of what to do). ``replay --wait`` waits for the results of the tasks it sends back
and reports each one's outcome.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.table import Table

from relaybus.bus.rpc import ReplyRouter
from relaybus.dlq import (
    MAX_BATCH,
    DeadLetter,
    ReplayReport,
    list_dead_letters,
    purge_dead_letters,
    replay_dead_letters,
    show_dead_letter,
)

from ._common import BadUsage, CliError, add_amqp_url, open_bus, positive_float, positive_int, run_async
from ._render import make_console

__all__ = ["register"]

_MAX_FIXED_BODY = 1024 * 1024
_UNWRAPPED = 100_000  # off a terminal (piped) the table wraps nothing: one row per letter, grep-able


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
        description="Show the first --limit dead letters: message id, age, the queue it died in and the "
        "reason. Reading them leaves them in the queue. relaybus dlq show ID prints one in full.",
    )
    common(p_list)
    p_list.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    p_list.set_defaults(func=_run_list)

    p_show = sub.add_parser(
        "show",
        help="print one dead letter in full (headers, body, what to do)",
        description="Print the dead letter with this message id, whole: where it came from, why and when it "
        "died, its headers and body, and what to do with it. It stays in the queue.",
    )
    common(p_show)
    p_show.add_argument("message_id", metavar="MESSAGE_ID", help="as relaybus dlq list shows it")
    p_show.add_argument("--json", action="store_true", help="as one JSON object")
    p_show.set_defaults(func=_run_show)

    p_replay = sub.add_parser(
        "replay",
        help="send dead letters back to where they came from",
        description="Publish the chosen dead letters again to the exchange and routing key they had (the "
        "queue they died in gets them back) and remove them from relaybus.dead. --body sends a corrected "
        "body instead of the dead one. --wait waits for the results of the tasks among them and reports "
        "each one's outcome (their results come here, not to their first caller).",
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
    p_replay.add_argument(
        "--wait",
        type=positive_float,
        default=None,
        metavar="SECONDS",
        help="wait up to this long for each replayed task's result and report it (default: do not wait)",
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
                print(json.dumps(_document(letter, body=False)))
            return 0
        table = Table(title=f"{len(letters)} dead letter(s) in relaybus.dead")
        table.add_column("message id", overflow="fold")
        table.add_column("age", justify="right", no_wrap=True)
        table.add_column("from queue", overflow="fold")
        table.add_column("reason", overflow="fold")
        now = time.time()
        for letter in letters:
            table.add_row(
                letter.message_id or "-",
                _age(letter.age_s(now)),
                letter.queue or letter.routing_key,
                letter.reason,
            )
        make_console(width_off_terminal=_UNWRAPPED).print(table)
        return 0

    return run_async(main)


def _run_show(args: argparse.Namespace) -> int:
    async def main() -> int:
        bus = await open_bus(args.amqp_url)
        try:
            letter = await show_dead_letter(bus, args.message_id, limit=args.limit, idle_s=args.idle)
        finally:
            await bus.close()
        if letter is None:
            raise CliError(
                f"no dead letter {args.message_id!r} among the first {args.limit} in relaybus.dead "
                "(relaybus dlq list shows them; --limit looks at more)",
                1,
            )
        document = _document(letter, body=True)
        if args.json:
            print(json.dumps(document, indent=2, ensure_ascii=False))
            return 0
        for field, value in document.items():
            if field not in ("headers", "body"):
                print(f"{field.replace('_', ' ')}: {value if value is not None else '-'}")
        print("headers:")
        for name, value in letter.headers.items():
            print(f"  {name}: {value}")
        print("body:")
        print(_body_text(letter.body))
        return 0

    return run_async(main)


def _document(letter: DeadLetter, *, body: bool) -> dict[str, Any]:
    """The letter as JSON: every field, its age, and what to do (``body``: the whole body and headers)."""
    row: dict[str, Any] = {
        "message_id": letter.message_id,
        "reason": letter.reason,
        "age_s": None if (age := letter.age_s()) is None else round(age, 3),
        "died_at": None
        if letter.died_at is None
        else datetime.fromtimestamp(letter.died_at, UTC).isoformat(timespec="seconds"),
        "queue": letter.queue,
        "exchange": letter.exchange,
        "routing_key": letter.routing_key,
        "correlation_id": letter.correlation_id,
        "reply_to": letter.reply_to,
        "size": letter.size,
        "hint": letter.hint,
    }
    if body:
        row["headers"] = dict(letter.headers)
        row["body"] = letter.body.decode("utf-8", "replace")
    else:
        row["preview"] = letter.preview
    return row


def _body_text(body: bytes) -> str:
    text = body.decode("utf-8", "replace")
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


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
            async with ReplyRouter(bus) as router:
                report = await replay_dead_letters(
                    bus,
                    ids=args.ids,
                    limit=args.limit,
                    idle_s=args.idle,
                    replace_body=body,
                    reply_to=router.queue if args.wait else None,
                )
                _print_report(report, args)
                outcomes_ok = await _report_outcomes(router, report, args.wait) if args.wait else True
        finally:
            await bus.close()
        missing = set(args.ids or ()) - set(report.replayed) - set(report.failed)
        return 0 if outcomes_ok and not report.failed and not missing else 1

    return run_async(main)


def _print_report(report: ReplayReport, args: argparse.Namespace) -> None:
    for message_id in report.replayed:
        task = report.tasks.get(message_id)
        where = "" if task is None or args.wait else " (a task: --wait reports its result)"
        print(f"replayed {message_id}{where}")
    for message_id, reason in report.failed.items():
        print(f"kept {message_id}: {reason}", file=sys.stderr)
    missing = set(args.ids or ()) - set(report.replayed) - set(report.failed)
    for message_id in sorted(missing):
        print(f"not found {message_id} (among the first {args.limit} dead letters)", file=sys.stderr)
    if not report.replayed and not report.failed and not missing:
        print("no dead letters")


async def _report_outcomes(router: ReplyRouter, report: ReplayReport, wait_s: float) -> bool:
    """Wait up to ``wait_s`` for the results of the replayed tasks; print each outcome; all succeeded?"""
    futures = {task_id: router.expect(task_id) for task_id in report.tasks.values()}
    if futures:
        await asyncio.wait(futures.values(), timeout=wait_s)
    ok = True
    for task_id, future in futures.items():
        if not future.done():
            ok = False
            print(f"result {task_id}: none within {wait_s:g}s (--wait)", file=sys.stderr)
            continue
        result = future.result()
        ok = ok and result.ok
        why = (
            f" ({result.error.type}: {' '.join(result.error.message.split())[:300]})" if result.error else ""
        )
        print(f"result {task_id}: {result.status.value}{why}")
    return ok


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
