"""The tree keeps its shape: every module says its one job in its first docstring line and stays small."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "relaybus"
MAX_LINES = 500


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_every_module_opens_with_a_docstring_naming_its_job() -> None:
    missing = [
        str(path.relative_to(SRC))
        for path in _modules()
        if not (ast.get_docstring(ast.parse(path.read_text())) or "").strip()
    ]
    assert not missing, f"modules without a docstring saying their one job: {missing}"


def test_no_module_passes_the_size_limit() -> None:
    large = {
        str(path.relative_to(SRC)): n
        for path in _modules()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not large, f"modules over {MAX_LINES} lines (split the second job out): {large}"
