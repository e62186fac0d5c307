"""API tokens: created by an admin, stored hashed, sent as ``Authorization: Bearer <token>``.

A token reads ``dbx_<id>_<secret>``: the id finds its row, the secret (32 random bytes) is
checked against the stored sha256 in constant time, so the database never holds a usable
token. Scopes are ordered: ``read`` < ``write`` < ``admin``; an endpoint names the least it
needs (:func:`require`) and every route depends on one, so no endpoint is open.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from typing import Any

from fastapi import Request

from squeezr.dbx.errors import UserError
from squeezr.dbx.server.storage import Storage
from squeezr.dbx.timeutil import now_iso

__all__ = [
    "SCOPES",
    "Forbidden",
    "Unauthorized",
    "create_token",
    "require",
    "verify",
    "verify_token",
]

SCOPES = ("read", "write", "admin")


class Unauthorized(UserError):
    status = 401


class Forbidden(UserError):
    status = 403


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(storage: Storage, name: str, scope: str) -> tuple[str, str]:
    """A new token: ``(id, token)``. The token is shown once; only its hash is kept."""
    if scope not in SCOPES:
        raise UserError(f"scope {scope!r} is not one of {', '.join(SCOPES)}")
    if not isinstance(name, str) or not name.strip():
        raise UserError("give the token a name saying who or what uses it (--name)")
    token_id = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    storage.add_token(token_id, name.strip(), scope, _digest(secret), now_iso())
    return token_id, f"dbx_{token_id}_{secret}"


def verify(storage: Storage, header: str | None) -> dict[str, Any]:
    """The token record an ``Authorization`` header carries; Unauthorized otherwise."""
    if not header or not header.startswith("Bearer "):
        raise Unauthorized(
            "this server needs an API token: send 'Authorization: Bearer <token>' "
            "(set $DBX_TOKEN for the dbx client; an admin creates one with `dbx token create`)"
        )
    return verify_token(storage, header.removeprefix("Bearer ").strip())


def verify_token(storage: Storage, token: str) -> dict[str, Any]:
    """The record of ``token`` (as sent in a header or stored in the web UI's cookie);
    Unauthorized if it is malformed, unknown or revoked."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != "dbx":
        raise Unauthorized("malformed API token; it reads dbx_<id>_<secret>")
    record = storage.token(parts[1])
    if record is None or not hmac.compare_digest(record["hash"], _digest(parts[2])):
        raise Unauthorized("unknown API token; ask an admin for one (`dbx token create`)")
    if record["revoked"]:
        raise Unauthorized(f"API token {record['id']} was revoked on {record['revoked']}")
    return record


def require(scope: str) -> Callable[[Request], dict[str, Any]]:
    """A FastAPI dependency: the request's token, which must have at least ``scope``."""
    needed = SCOPES.index(scope)

    def check(request: Request) -> dict[str, Any]:
        record = verify(request.app.state.storage, request.headers.get("authorization"))
        if SCOPES.index(record["scope"]) < needed:
            raise Forbidden(
                f"token {record['id']} has scope {record['scope']!r}; this needs {scope!r}"
            )
        return record

    return check
