"""The README's performance figures are bench/RESULTS.md's, regenerated (``python -m bench.readme``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import readme

RESULTS = """# relaybus benchmarks

Run 2026-12-02 12:13 UTC, mode `full`, 3 repetitions.

### 5. Memory

| process | RSS |
|---|---|

### Targets (issue 18)

| target | measured | status |
|---|---|---|
| one-in-flight p50 <= 1.3x raw | 1.65x | **NOT met** |

- a note

Guarantees on each side. Not for the README.

### Executor benchmark
"""


def test_the_readme_block_is_the_run_line_and_the_targets_table_with_its_notes() -> None:
    block = readme.targets_block(RESULTS)
    assert (
        block.splitlines()[0] == "From `bench/RESULTS.md`: 2026-12-02 12:13 UTC, mode `full`, 3 repetitions."
    )
    assert "| one-in-flight p50 <= 1.3x raw | 1.65x | **NOT met** |" in block
    assert block.endswith("- a note")
    assert "Guarantees" not in block
    assert "RSS" not in block


def test_only_the_text_between_the_markers_is_replaced() -> None:
    page = f"intro\n{readme.START}\nold figures\n{readme.END}\nafter\n"
    assert readme.updated(page, "new") == f"intro\n{readme.START}\nnew\n{readme.END}\nafter\n"
    with pytest.raises(readme.ReadmeBlockError, match="no <!-- bench:targets -->"):
        readme.updated("no markers here", "new")
    with pytest.raises(readme.ReadmeBlockError, match="no '### Targets' table"):
        readme.targets_block("# nothing measured\n")


def test_the_committed_readme_shows_the_committed_results(tmp_path: Path) -> None:
    assert readme.main(["--check"]) == 0, "run: python -m bench.readme"
    stale = tmp_path / "README.md"
    stale.write_text(f"{readme.START}\nold\n{readme.END}\n")
    assert readme.main(["--check", "--readme", str(stale)]) == 1
    assert readme.main(["--readme", str(stale)]) == 0
    assert readme.main(["--check", "--readme", str(stale)]) == 0
