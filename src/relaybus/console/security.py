"""What keeps the console safe to open: strict response headers, refusal of cross-site and oversized
requests, a CSRF token on every form, and the operator token on every action.

What a caller may rely on:

- Every response carries a Content-Security-Policy that allows scripts, styles and images from the console
  itself only (no inline script, no ``eval``), forbids framing (``frame-ancestors 'none'`` and
  ``X-Frame-Options: DENY``), plus ``nosniff``, ``Referrer-Policy: same-origin`` and
  ``Cache-Control: no-store``.
- A POST is refused (403) when the browser says it comes from another site (``Sec-Fetch-Site`` other than
  ``same-origin``/``none``, or an ``Origin`` that is not the console's own host), when its CSRF field does
  not match, or when it is not a form (415); a body over the limit is refused with 413.
- An action needs the operator token, as ``Authorization: Bearer <token>`` or the form field ``token``;
  it is compared in constant time (``hmac.compare_digest``) and never logged. Without a configured token the
  console is read-only and refuses every action.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web
from multidict import MultiDict, MultiDictProxy

from relaybus.secrets import Secret

__all__ = ["CSP", "FORM_TYPES", "SECURITY_HEADERS", "Guard", "Refused", "security_headers"]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # "no-referrer" would make a browser send "Origin: null" on POSTs
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
_SAME_SITE = frozenset({"same-origin", "none"})
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def security_headers(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Set the strict headers on every response, errors included."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(SECURITY_HEADERS)
        raise
    if not response.prepared:  # an SSE stream set its headers when it opened
        response.headers.update(SECURITY_HEADERS)
    return response


class Refused(web.HTTPException):
    """A request refused with a plain-text reason (never a secret)."""

    def __init__(self, status: int, reason: str) -> None:
        self.status_code = status
        super().__init__(text=reason, content_type="text/plain")


class Guard:
    """The checks of a POST: same site, CSRF token, body cap, form, operator token (see module docstring)."""

    def __init__(self, operator_token: Secret | None, max_body_bytes: int) -> None:
        self._token = operator_token  # a Secret: revealed only inside _token_ok
        self._max_body = max_body_bytes
        self.csrf = secrets.token_urlsafe(32)
        """This process's CSRF token: every form carries it, and a POST without it is refused."""

    @property
    def read_only(self) -> bool:
        return self._token is None

    async def form(self, request: web.Request) -> MultiDictProxy[str]:
        """The checked form of a POST (same site, a form, within the cap, the CSRF token, not read-only);
        raises :class:`Refused` (403, 413, 415) otherwise. :meth:`authorize` checks the operator token."""
        self._same_site(request)
        if request.content_type not in FORM_TYPES:
            raise Refused(415, "send the action as a form (application/x-www-form-urlencoded)")
        if request.content_length is not None and request.content_length > self._max_body:
            raise Refused(413, f"the body has {request.content_length} bytes; the limit is {self._max_body}")
        try:
            data = await request.post()
        except web.HTTPRequestEntityTooLarge:
            raise Refused(413, f"the body is over the limit of {self._max_body} bytes") from None
        fields = MultiDictProxy(MultiDict([(k, v) for k, v in data.items() if isinstance(v, str)]))
        if not hmac.compare_digest(fields.get("csrf", "").encode(), self.csrf.encode()):
            raise Refused(403, "the form's CSRF token is missing or stale: reload the page and try again")
        if self._token is None:
            raise Refused(403, "the console is read-only: start it with an operator token to act")
        return fields

    def authorize(self, request: web.Request, fields: MultiDictProxy[str]) -> None:
        """Raise :class:`Refused` (403) unless the request carries the operator token."""
        if self._token is None or not self._token_ok(request, fields.get("token", "")):
            raise Refused(403, "an action needs the operator token (form field or Authorization: Bearer)")

    def _same_site(self, request: web.Request) -> None:
        site = request.headers.get("Sec-Fetch-Site")
        if site is not None and site not in _SAME_SITE:
            raise Refused(403, f"cross-site request refused (Sec-Fetch-Site: {site})")
        origin = request.headers.get("Origin")
        if origin is not None and (origin == "null" or urlsplit(origin).netloc != request.host):
            raise Refused(403, "cross-site request refused (Origin is not this console)")

    def _token_ok(self, request: web.Request, field: str) -> bool:
        assert self._token is not None
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        offered = credentials.strip() if scheme.lower() == "bearer" else field
        return hmac.compare_digest(offered.encode(), self._token.reveal().encode())
