"""The secret mixed into plan files' task ids, so a named run's ids cannot be derived from its name alone.

Taken from ``RELAYBUS_PLAN_SECRET`` when set (give every machine that resumes the same runs the same value),
else from ``$XDG_CONFIG_HOME/relaybus/plan-secret`` (``~/.config/...``), a random value written there
(mode 0600) on first use, so resuming a named run on the same machine keeps working.
"""

from __future__ import annotations

import functools
import os
import secrets
from pathlib import Path

from relaybus.exceptions import ConfigError

__all__ = ["PLAN_SECRET_ENV", "plan_secret"]

PLAN_SECRET_ENV = "RELAYBUS_PLAN_SECRET"  # noqa: S105 - the variable's name, not a secret


def _secret_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "relaybus" / "plan-secret"


@functools.cache
def _stored_secret(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process wrote it first: use that one
        return path.read_text().strip()
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
    return value


def plan_secret() -> str:
    """The secret of this machine's (or deployment's) plan task ids; see the module docstring."""
    value = os.environ.get(PLAN_SECRET_ENV)
    if value is not None:
        if not value.strip():
            raise ConfigError(f"{PLAN_SECRET_ENV} is set but empty: set a long random value or unset it")
        return value.strip()
    try:
        return _stored_secret(_secret_file())
    except OSError as exc:
        raise ConfigError(
            f"cannot read or create the plan secret {_secret_file()}: {exc.strerror}; "
            f"set {PLAN_SECRET_ENV} instead"
        ) from None
