"""Access to the UI: one secret token, as Jupyter does it.

``dbx ui`` makes a random token at start (or takes ``$DBX_UI_TOKEN``) and prints the URL
with ``?token=...``. Opening that URL once stores the token in an HttpOnly, SameSite=Strict
cookie (scoped to the port, so two UIs on one host do not clash) and redirects to the same
page without it; scripts send ``Authorization: Bearer TOKEN`` instead. A token is asked for
on every bind address, 127.0.0.1 included: a cluster head node is shared by many users,
any of whom could reach a local port. SameSite=Strict keeps other sites from posting notes
with the cookie. Static files (the stylesheet and the vendored libraries) need no token.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from squeezr.dbx.errors import UserError

PUBLIC = ("/static/",)


class Unauthorized(UserError):
    """No token, or a wrong one."""

    status = 401


def new_token() -> str:
    return secrets.token_urlsafe(24)


def _same(given: str, token: str) -> bool:
    """Constant-time comparison (of bytes: any text may arrive in a URL)."""
    return secrets.compare_digest(given.encode(), token.encode())


def cookie_name(request: Request) -> str:
    return f"dbx_ui_{request.url.port or 80}"


def given_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get(cookie_name(request))


def middleware(
    token: str, refuse: Callable[[Request, UserError], Response]
) -> Callable[..., Awaitable[Response]]:
    """An HTTP middleware letting through only requests that carry ``token``; others get
    ``refuse(request, Unauthorized(...))``."""

    async def check(request: Request, call_next: Callable[..., Awaitable[Response]]) -> Response:
        if request.url.path.startswith(PUBLIC):
            return await call_next(request)
        offered = request.query_params.get("token")
        if offered is not None and _same(offered, token):
            response = RedirectResponse(str(request.url.remove_query_params("token")), 303)
            response.set_cookie(
                cookie_name(request), token, httponly=True, samesite="strict", path="/"
            )
            return response
        given = given_token(request)
        if given is None or not _same(given, token):
            error = Unauthorized(
                "this dbx UI needs its access token: open the link `dbx ui` printed (it "
                "ends in ?token=...), or send the header Authorization: Bearer TOKEN"
                if given is None and offered is None
                else "wrong access token: open the link `dbx ui` printed at start"
            )
            return refuse(request, error)
        return await call_next(request)

    return check
