"""Async end to end: outside the command line, no module in src/ starts an event loop of its own."""

from __future__ import annotations

import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "relaybus"
FORBIDDEN = re.compile(
    r"\basyncio\.run\(|\brun_until_complete\(|\bnew_event_loop\(|from asyncio import[^\n]*\brun\b"
)


def test_src_tree_is_where_we_think() -> None:
    assert (SRC / "executor" / "core.py").is_file()


def test_no_asyncio_run_outside_the_cli() -> None:
    offenders = [
        f"{path.relative_to(SRC)}:{number}: {line.strip()}"
        for path in sorted(SRC.rglob("*.py"))
        if "cli" not in path.relative_to(SRC).parts
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if FORBIDDEN.search(line)
    ]
    assert offenders == [], "start the event loop only in relaybus/cli/:\n" + "\n".join(offenders)


def test_the_pattern_catches_what_it_should() -> None:
    for line in ("asyncio.run(main())", "loop.run_until_complete(x)", "from asyncio import sleep, run"):
        assert FORBIDDEN.search(line)
    assert not FORBIDDEN.search("await runner.run(task, ctx)")
