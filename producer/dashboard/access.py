"""Who may look and who may act: the access token, CSRF tokens, read-only mode, and the
headers that keep a browser from running anything the dashboard did not ship.

- A session cookie (random, HttpOnly, SameSite=Strict) is given on the first visit; every
  form carries a CSRF token derived from it with this process's secret, and every POST must
  bring it back (and come from this origin, when the browser says where it comes from).
- With a token, every page asks for it once (`/login`) and remembers it in a cookie holding a
  digest, never the token; programs may send `Authorization: Bearer <token>` instead.
- Read-only: every POST but the login is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp import web

SESSION_COOKIE = "coroq_session"
AUTH_COOKIE = "coroq_auth"
CSRF_FIELD = "csrf"
OPEN_PATHS = ("/login", "/static/")  # reachable without the token
# Where a request keeps its session id: aiohttp 3.13+ wants a typed key (it warns of a
# string); older releases have none. (Any: the request's overloads take either, not a union.)
SESSION: Any = web.RequestKey(SESSION_COOKIE, str) if hasattr(web, "RequestKey") else SESSION_COOKIE

# Scripts and styles only from the dashboard itself; no frames, no plugins, no inline script.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Access:
    def __init__(self, token: str | None, read_only: bool) -> None:
        self.token = token
        self.read_only = read_only
        self._secret = secrets.token_bytes(32)

    def csrf_token(self, request: web.Request) -> str:
        return self._digest("csrf", request[SESSION])

    def auth_cookie_value(self) -> str:
        return self._digest("auth", self.token or "")

    def token_matches(self, given: str) -> bool:
        return self.token is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def check_csrf(self, request: web.Request, given: str) -> None:
        """Raise 403 unless the form's token belongs to this session and the request comes
        from a page of this dashboard."""
        if not hmac.compare_digest(given.encode(), self.csrf_token(request).encode()):
            raise web.HTTPForbidden(
                text="the form's CSRF token is missing or stale: reload the page"
            )
        origin = request.headers.get("Origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.host:
            raise web.HTTPForbidden(text=f"a form from another site ({origin}) is refused")

    def _digest(self, purpose: str, value: str) -> str:
        return hmac.new(self._secret, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()

    def _authenticated(self, request: web.Request) -> bool:
        if self.token is None:
            return True
        bearer = request.headers.get("Authorization", "")
        if bearer.startswith("Bearer ") and self.token_matches(bearer.removeprefix("Bearer ")):
            return True
        cookie = request.cookies.get(AUTH_COOKIE, "")
        return hmac.compare_digest(cookie.encode(), self.auth_cookie_value().encode())

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        session = request.cookies.get(SESSION_COOKIE)
        fresh_session = not session or len(session) > 64
        request[SESSION] = secrets.token_urlsafe(24) if fresh_session else session
        try:
            response = await self._guarded(request, handler)
        except web.HTTPException as exc:  # raised on, as aiohttp wants: returning one warns
            self._finish(request, exc, fresh_session)
            raise
        self._finish(request, response, fresh_session)
        return response

    def _finish(
        self, request: web.Request, response: web.StreamResponse, fresh_session: bool
    ) -> None:
        """The security headers on every answer, and the session cookie on a new session's."""
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if fresh_session:
            response.set_cookie(
                SESSION_COOKIE,
                request[SESSION],
                httponly=True,
                samesite="Strict",
                secure=request.secure,
                path="/",
            )

    async def _guarded(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(OPEN_PATHS) and not self._authenticated(request):
            if request.method == "GET" and "text/html" in request.headers.get(
                "Accept", "text/html"
            ):
                raise web.HTTPSeeOther(f"/login?next={quote(request.path_qs, safe='')}")
            raise web.HTTPUnauthorized(
                text="this dashboard needs its token (Authorization: Bearer <token>)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if request.method == "POST":
            if self.read_only and request.path != "/login":
                raise web.HTTPForbidden(text="this dashboard is read-only (--read-only)")
            form = await request.post()
            self.check_csrf(request, str(form.get(CSRF_FIELD, "")))
        return await handler(request)


def safe_next(target: str) -> str:
    """A redirect target after login: a path of this site only."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"
