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


def local_scope(token: str) -> Callable[[str], str]:
    """The check of ``dbx ui``: its one token, which may do everything."""

    def scope_of(given: str) -> str:
        if not _same(given, token):
            raise Unauthorized("wrong access token: open the link `dbx ui` printed at start")
        return "write"

    return scope_of


def middleware(
    scope_of: Callable[[str], str],
    refuse: Callable[[Request, UserError], Response],
    url_token: bool = True,
) -> Callable[..., Awaitable[Response]]:
    """An HTTP middleware letting through only requests whose token ``scope_of`` accepts
    (it returns the token's scope, ``read`` or more, or raises Unauthorized); changes
    (POST) need ``write``. ``POST /login`` with a form field ``token`` stores an accepted
    token in the cookie; with ``url_token``, so does opening any page with ``?token=``
    (the link ``dbx ui`` prints). Others get ``refuse(request, error)``."""

    async def check(request: Request, call_next: Callable[..., Awaitable[Response]]) -> Response:
        root = str(request.scope.get("root_path", "")).rstrip("/")
        path = request.url.path.removeprefix(root)
        if path.startswith(PUBLIC):
            return await call_next(request)
        if path == "/login" and request.method == "POST":
            form = await request.form()
            offered = str(form.get("token") or "").strip()
            target = str(form.get("next") or "")
            if not target.startswith(root + "/") or target.startswith("//"):
                target = root + "/"
            return _login(request, scope_of, refuse, offered, target)
        offered = request.query_params.get("token") if url_token else None
        if offered is not None:
            target = str(request.url.remove_query_params("token"))
            return _login(request, scope_of, refuse, offered, target)
        given = given_token(request)
        if given is None:
            return refuse(
                request,
                Unauthorized(
                    "this dbx UI needs its access token: open the link `dbx ui` printed (it "
                    "ends in ?token=...), paste the token below, or send the header "
                    "Authorization: Bearer TOKEN"
                    if url_token
                    else "this dbx server needs an API token: paste one below (an admin "
                    "creates it with `dbx token create`; read browses, write edits notes), or "
                    "send the header Authorization: Bearer TOKEN"
                ),
            )
        try:
            scope = scope_of(given)
        except UserError as exc:
            return refuse(request, exc)
        if request.method not in ("GET", "HEAD") and scope == "read":
            return refuse(
                request, Forbidden("this token may only read; changing notes needs a write token")
            )
        return await call_next(request)

    return check


class Forbidden(UserError):
    """A token whose scope does not allow the change."""

    status = 403


def _login(
    request: Request,
    scope_of: Callable[[str], str],
    refuse: Callable[[Request, UserError], Response],
    offered: str,
    target: str,
) -> Response:
    """A redirect to ``target`` storing ``offered`` in the cookie, if it is accepted."""
    try:
        scope_of(offered)
    except UserError as exc:
        return refuse(request, exc)
    response = RedirectResponse(target, 303)
    response.set_cookie(cookie_name(request), offered, httponly=True, samesite="strict", path="/")
    return response
