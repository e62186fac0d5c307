"""Token administration over HTTP (admin scope); ``dbx token`` does the same on the server
machine. The hash is never returned."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from squeezr.dbx.server import auth
from squeezr.dbx.server.routes.common import API, JsonBody, obj, storage
from squeezr.dbx.timeutil import now_iso

router = APIRouter(prefix=API, tags=["tokens"], dependencies=[Depends(auth.require("admin"))])


@router.get("/tokens")
def list_tokens(request: Request) -> list[dict[str, Any]]:
    return [{k: v for k, v in t.items() if k != "hash"} for t in storage(request).tokens()]


@router.post("/tokens")
def create_token(request: Request, body: JsonBody) -> dict[str, str]:
    """``{"name", "scope"}`` -> ``{"id", "token"}``; the token is shown only here."""
    body = obj(body, '{"name", "scope"}')
    token_id, token = auth.create_token(
        storage(request), body.get("name", ""), body.get("scope", "")
    )
    return {"id": token_id, "token": token}


@router.delete("/tokens/{token_id}")
def revoke_token(request: Request, token_id: str) -> dict[str, bool]:
    storage(request).revoke_token(token_id, now_iso())
    return {"ok": True}
