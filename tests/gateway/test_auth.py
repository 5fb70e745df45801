"""Bearer tokens: loading them from a file and the environment, and checking requests against them."""

from __future__ import annotations

from pathlib import Path

import pytest

from relaybus import ConfigError
from relaybus.gateway import TOKENS_ENV, BearerAuth, load_tokens
from relaybus.gateway.web import HttpProblem

GOOD = "a" * 16
OTHER = "b" * 20


def test_tokens_come_from_the_file_and_the_environment_together(tmp_path: Path) -> None:
    token_file = tmp_path / "tokens"
    token_file.write_text(f"# the operator's tokens\n\n{GOOD}\n  {OTHER}  \n")
    tokens = load_tokens(token_file, {TOKENS_ENV: f" {OTHER}, cccccccccccccccc ,"})
    assert [t.reveal() for t in tokens] == [GOOD, OTHER, "c" * 16]  # a repeated token counts once
    assert load_tokens(None, {}) == ()


@pytest.mark.parametrize("bad", ["x1y2", "has space inside it!", 'no"quotes"allowed-here'])
def test_a_weak_or_malformed_token_is_refused_without_showing_it(bad: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_tokens(None, {TOKENS_ENV: f"{GOOD},{bad}"})
    assert "token 2" in str(raised.value)
    assert bad not in str(raised.value)


def test_an_unreadable_token_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the token file"):
        load_tokens(tmp_path / "missing", {})


def test_only_a_configured_bearer_token_is_allowed() -> None:
    auth = BearerAuth(load_tokens(None, {TOKENS_ENV: f"{GOOD},{OTHER}"}))
    assert not auth.is_open
    assert auth.allows(f"Bearer {GOOD}")
    assert auth.allows(f"bearer {OTHER}")
    for refused in (None, "", GOOD, f"Basic {GOOD}", f"Bearer {GOOD}x", f"Bearer {GOOD[:-1]}", "Bearer "):
        assert not auth.allows(refused), refused


def test_a_refusal_is_a_401_with_a_bearer_challenge_and_no_token_in_it() -> None:
    auth = BearerAuth(load_tokens(None, {TOKENS_ENV: GOOD}))
    with pytest.raises(HttpProblem) as raised:
        auth.check(f"Bearer {GOOD[:-1]}Z")
    assert raised.value.status == 401
    assert raised.value.headers["WWW-Authenticate"].startswith("Bearer ")
    assert GOOD[:-1] not in raised.value.detail


def test_with_no_token_configured_every_request_is_let_in() -> None:
    auth = BearerAuth(())
    assert auth.is_open
    assert auth.allows(None)


def test_tokens_never_show_in_a_repr() -> None:
    [token] = load_tokens(None, {TOKENS_ENV: GOOD})
    assert GOOD not in repr(token)
    assert GOOD not in repr(vars(BearerAuth([token])))
