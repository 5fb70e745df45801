"""``relaybus completion bash|zsh|fish``: a completion script generated from the parser itself. The bash one
is loaded into a real bash and asked to complete; zsh and fish are not installed here, so their scripts are
checked for the commands and options they must offer."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from .support import run_cli, usage_error


@pytest.fixture(scope="module")
def bash_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    proc = run_cli("completion", "bash")
    assert proc.returncode == 0, proc.stderr
    path = tmp_path_factory.mktemp("completion") / "relaybus.bash"
    path.write_text(proc.stdout)
    return path


def complete(script: Path, *words: str, cwd: Path | None = None) -> list[str]:
    """What bash offers for the last of ``words`` after ``relaybus``, with the script loaded."""
    line = " ".join(f"'{w}'" if w else "''" for w in ("relaybus", *words))
    program = (
        f"source {script}; COMP_WORDS=({line}); COMP_CWORD={len(words)}; _shtab_relaybus; "
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    proc = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=30, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return [line for line in proc.stdout.splitlines() if line]


def test_bash_completes_sub_commands_their_sub_commands_options_and_choices(bash_script: Path) -> None:
    assert complete(bash_script, "dl") == ["dlq"]
    assert complete(bash_script, "comp") == ["completion"]
    assert complete(bash_script, "dlq", "") == ["list", "show", "replay", "purge"]
    assert complete(bash_script, "run", "--ti") == ["--timeout"]
    assert complete(bash_script, "worker", "--log-level", "") == ["DEBUG", "INFO", "WARNING", "ERROR"]
    assert "--exit-if-down" in complete(bash_script, "worker", "--")


def test_bash_completes_file_names_for_a_plan_file(bash_script: Path, tmp_path: Path) -> None:
    (tmp_path / "nightly.yaml").write_text("name: n\ntasks: []\n")
    assert complete(bash_script, "run", "night", cwd=tmp_path) == ["nightly.yaml"]


@pytest.mark.parametrize(
    ("shell", "marker"), [("zsh", "#compdef relaybus"), ("fish", "complete -c relaybus")]
)
def test_zsh_and_fish_scripts_offer_every_command(shell: str, marker: str) -> None:
    proc = run_cli("completion", shell)
    assert proc.returncode == 0, proc.stderr
    assert marker in proc.stdout
    for word in ("worker", "submit", "cancel", "agents", "dlq", "replay", "exit-if-down", "watch"):
        assert word in proc.stdout, word


def test_an_unknown_shell_is_a_usage_error() -> None:
    assert "invalid choice: 'tcsh'" in usage_error(run_cli("completion", "tcsh"), "completion")
