"""Keep passwords and API keys out of logs, reprs and error messages."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

__all__ = ["Secret", "mask_secrets", "mask_url"]

_MASK = "***"


def mask_url(url: str) -> str:
    """Return ``url`` with its password (if any) replaced by ``***``; never raises. A comma-separated list of
    URLs (``amqp://a,amqp://b``: a cluster) has every password masked."""
    if "," in url and url.count("://") > 1:
        return ",".join(mask_url(part) for part in url.split(","))
    try:
        parts = urlsplit(url)
    except ValueError:
        return re.sub(r"//([^:/@]*):[^@]*@", rf"//\1:{_MASK}@", url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{user}:{_MASK}@{host}" + (f":{port}" if port is not None else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


_URL_CRED = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*):[^@\s]*@")
_KEYLIKE = re.compile(r"\b(sk-[A-Za-z0-9_-]{8,}|sk-ant-[A-Za-z0-9_-]{8,})")


def mask_secrets(text: str, *secrets: Secret | str | None) -> str:
    """Mask URL passwords, things that look like API keys, and each of ``secrets`` in ``text``.

    Pass :class:`Secret` s as they are: they are revealed here only to be searched for, never kept.
    """
    text = _URL_CRED.sub(rf"\1:{_MASK}@", text)
    text = _KEYLIKE.sub(_MASK, text)
    for secret in secrets:
        value = secret.reveal() if isinstance(secret, Secret) else secret
        if value and len(value) >= 4:
            text = text.replace(value, _MASK)
    return text


class Secret:
    """A string that never shows itself in ``repr``/``str``; call :meth:`reveal` where it is really needed."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)
