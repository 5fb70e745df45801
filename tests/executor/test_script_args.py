"""``ScriptArgs``: what a registered script takes from a task; everything else is refused with the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from relaybus.exceptions import ExecutorError
from relaybus.executor import ScriptArgs


def test_by_default_any_arguments_follow_a_double_dash() -> None:
    assert ScriptArgs().argv_tail(["--output=FILE", "a b"], cwd=None) == ["--", "--output=FILE", "a b"]
    assert ScriptArgs().argv_tail([], cwd=None) == []


def test_without_the_separator_an_option_is_refused() -> None:
    reason = ScriptArgs(separator=False).argv_tail(["ok", "--output=FILE"], cwd=None)
    assert isinstance(reason, str)
    assert "argument 2 '--output=FILE' is refused: this script takes no options" in reason
    assert ScriptArgs(separator=False).argv_tail(["ok"], cwd=None) == ["ok"]


def test_options_true_passes_options_as_they_are() -> None:
    assert ScriptArgs(options=True).argv_tail(["-n", "3"], cwd=None) == ["-n", "3"]


def test_a_pattern_must_match_each_argument_whole() -> None:
    spec = ScriptArgs(pattern=r"[0-9a-f]{7,40}")
    assert spec.argv_tail(["abcdef0"], cwd=None) == ["--", "abcdef0"]
    reason = spec.argv_tail(["abcdef0x"], cwd=None)
    assert isinstance(reason, str)
    assert "does not match the script's pattern" in reason


def test_patterns_per_position_also_cap_the_count() -> None:
    spec = ScriptArgs(patterns=[r"\d+", r"[a-z]+"], separator=False)
    assert spec.argv_tail(["12", "ab"], cwd=None) == ["12", "ab"]
    assert "does not match" in str(spec.argv_tail(["ab", "12"], cwd=None))
    assert "at most 2 argument(s), got 3" in str(spec.argv_tail(["1", "a", "b"], cwd=None))


def test_paths_are_confined_to_their_directory(tmp_path: Path) -> None:
    inside = tmp_path / "reports"
    inside.mkdir()
    (inside / "escape").symlink_to("/etc")
    spec = ScriptArgs(paths_under=str(inside))
    assert spec.argv_tail(["a.txt"], cwd=str(inside)) == ["--", "a.txt"]
    assert spec.argv_tail([str(inside / "b" / "c.txt")], cwd=None) == ["--", str(inside / "b" / "c.txt")]
    for escape in ["../x", "/etc/passwd", "escape/passwd"]:
        reason = spec.argv_tail([escape], cwd=str(inside))
        assert isinstance(reason, str)
        assert "outside" in reason, escape


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"max_args": 999}, "max_args"),
        ({"pattern": "(", "patterns": None}, "not a regular expression"),
        ({"pattern": "a", "patterns": ["b"]}, "not both"),
        ({"paths_under": "/no/such/dir"}, "not a directory"),
    ],
)
def test_a_bad_declaration_is_an_executor_error(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(ExecutorError, match=words):
        ScriptArgs(**kwargs)  # type: ignore[arg-type]
