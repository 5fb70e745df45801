"""Bearer tokens: which the operator configured (a file or ``RELAYBUS_GATEWAY_TOKENS``) and the check of each
request against them.

What a caller may rely on: a token is compared with every configured token in constant time
(``hmac.compare_digest``), so neither timing nor order says how much of a guess was right; a request without
a valid ``Authorization: Bearer <token>`` gets 401 with ``WWW-Authenticate: Bearer``. Tokens are kept as
:class:`~relaybus.secrets.Secret` s and never logged. With no token configured every request is let in (the
gateway warns at start). The agent cards, ``/openapi.json``, ``/docs`` and ``/healthz`` stay public: they hold
no task data, and A2A clients read a card to learn that a token is needed.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from relaybus.exceptions import ConfigError
from relaybus.secrets import Secret

from .web import HttpProblem

__all__ = ["MIN_TOKEN_LENGTH", "TOKENS_ENV", "BearerAuth", "load_tokens"]

TOKENS_ENV = "RELAYBUS_GATEWAY_TOKENS"
MIN_TOKEN_LENGTH = 16
# RFC 6750 b64token: what may follow "Bearer " in an Authorization header.
_TOKEN_RE = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")
_CHALLENGE = 'Bearer realm="relaybus"'


def _checked(token: str, where: str, position: int) -> Secret:
    # Say where the bad token is, never what it is.
    if len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(f"token {position} in {where} is shorter than {MIN_TOKEN_LENGTH} characters")
    if not _TOKEN_RE.match(token):
        raise ConfigError(
            f"token {position} in {where} has characters a bearer token cannot carry "
            "(use letters, digits and - . _ ~ + /)"
        )
    return Secret(token)


def load_tokens(token_file: Path | None = None, env: Mapping[str, str] | None = None) -> tuple[Secret, ...]:
    """The tokens of ``token_file`` (one a line; blank lines and lines starting with ``#`` skipped) and of
    ``$RELAYBUS_GATEWAY_TOKENS`` (comma-separated), together. ConfigError for an unreadable file or a token
    that is too short or not a bearer token."""
    tokens: list[Secret] = []
    if token_file is not None:
        try:
            lines = token_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"cannot read the token file {str(token_file)!r}: {type(exc).__name__}"
            ) from None
        wanted = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
        tokens += [_checked(t, str(token_file), i) for i, t in enumerate(wanted, 1)]
    raw = (env or {}).get(TOKENS_ENV, "")
    wanted = [t.strip() for t in raw.split(",") if t.strip()]
    tokens += [_checked(t, f"${TOKENS_ENV}", i) for i, t in enumerate(wanted, 1)]
    return tuple(dict.fromkeys(tokens))


class BearerAuth:
    """Checks ``Authorization`` headers against ``tokens``; open (lets every request in) without tokens."""

    def __init__(self, tokens: Iterable[Secret]) -> None:
        self._tokens = tuple(tokens)  # Secrets: revealed only inside allows(), never kept in the clear

    @property
    def is_open(self) -> bool:
        return not self._tokens

    def allows(self, authorization: str | None) -> bool:
        """True when ``authorization`` is ``Bearer <a configured token>`` (or no token is configured)."""
        if not self._tokens:
            return True
        scheme, _, credentials = (authorization or "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        offered = credentials.strip().encode()
        # Compare with every token, always: the time taken does not depend on which one matched.
        matched = False
        for token in self._tokens:
            matched |= hmac.compare_digest(offered, token.reveal().encode())
        return matched

    def check(self, authorization: str | None) -> None:
        """Raise a 401 :class:`~relaybus.gateway.web.HttpProblem` unless :meth:`allows`."""
        if not self.allows(authorization):
            detail = (
                "send Authorization: Bearer <token> (a token the gateway's operator configured)"
                if not authorization
                else "the bearer token is not one this gateway accepts"
            )
            raise HttpProblem(401, detail, headers={"WWW-Authenticate": _CHALLENGE})
