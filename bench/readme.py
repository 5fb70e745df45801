"""The README's performance figures, regenerated from ``bench/RESULTS.md`` (issue 18: never copied by hand).

    python -m bench.readme [--results bench/RESULTS.md] [--readme README.md] [--check]

The block between the markers ``<!-- bench:targets -->`` and ``<!-- /bench:targets -->`` in the README is
replaced by the run's first line (date, mode, machine) and its "Targets" table, taken from ``RESULTS.md`` as
they are. A full ``make bench`` that writes ``bench/RESULTS.md`` runs this too; ``--check`` only says whether
the README is up to date (exit code 1 when not), which is what ``tests/bench/test_readme_block.py`` asks.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from bench.common import ROOT

START, END = "<!-- bench:targets -->", "<!-- /bench:targets -->"
_TARGETS = re.compile(r"^### Targets\b.*$", re.MULTILINE)


class ReadmeBlockError(ValueError):
    """The results have no targets table, or the README has no (or a broken) block to put it in."""


def targets_block(results: str) -> str:
    """What goes between the markers: the run line and the targets table (with its notes) of ``results``."""
    run_line = next((line for line in results.splitlines() if line.startswith("Run ")), None)
    found = _TARGETS.search(results)
    if run_line is None or found is None:
        raise ReadmeBlockError("the results have no 'Run ...' line or no '### Targets' table")
    rest = results[found.end() :].lstrip("\n").splitlines()
    table: list[str] = []
    for line in rest:
        if line.startswith("### "):
            break
        table.append(line)
    while table and not table[-1].strip():
        table.pop()
    # The guarantees paragraph and the profile pointer that follow the table belong to RESULTS.md alone.
    cut = next(
        (i for i, line in enumerate(table) if line.startswith(("Guarantees on each side", "Where the"))), None
    )
    if cut is not None:
        table = table[:cut]
        while table and not table[-1].strip():
            table.pop()
    return "\n".join([f"From `bench/RESULTS.md`: {run_line[4:]}", "", *table])


def updated(readme: str, block: str) -> str:
    """``readme`` with the text between the markers replaced by ``block``."""
    start, end = readme.find(START), readme.find(END)
    if start < 0 or end < start:
        raise ReadmeBlockError(f"the README has no {START} ... {END} block")
    return readme[: start + len(START)] + "\n" + block + "\n" + readme[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.readme", description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "RESULTS.md")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--check", action="store_true", help="exit 1 when the README is not up to date")
    args = parser.parse_args(argv)
    try:
        readme = args.readme.read_text()
        new = updated(readme, targets_block(args.results.read_text()))
    except (OSError, ReadmeBlockError) as exc:
        print(f"bench.readme: {exc}", file=sys.stderr)
        return 2
    if args.check:
        if new != readme:
            print(f"{args.readme} is not up to date with {args.results}: run python -m bench.readme")
            return 1
        return 0
    args.readme.write_text(new)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
