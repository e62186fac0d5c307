"""Attachments: bytes are uploaded once per sha256 (``PUT /blobs/{sha256}``), then named in
an experiment (``PUT /experiments/{id}/attachments/{name}``). Names are checked like local
attachment names (relative, no ``..``) and never touch the file system: the bytes live under
their checksum."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse

from squeezr.dbx.errors import NotFound, UserError
from squeezr.dbx.server.auth import require
from squeezr.dbx.server.routes.common import API, JsonBody, blobs, obj, storage
from squeezr.dbx.server.storage.base import check_id
from squeezr.dbx.store import _attachment_name

router = APIRouter(prefix=API, tags=["attachments"])


@router.get("/blobs/{sha256}", dependencies=[Depends(require("read"))])
def get_blob(request: Request, sha256: str) -> FileResponse:
    path = blobs(request).path(sha256)
    if not path.is_file():
        raise NotFound(f"no blob {sha256} on this server")
    return FileResponse(path, media_type="application/octet-stream")


@router.head("/blobs/{sha256}", dependencies=[Depends(require("read"))])
def has_blob(request: Request, sha256: str) -> FileResponse:
    return get_blob(request, sha256)


@router.put("/blobs/{sha256}", dependencies=[Depends(require("write"))])
async def put_blob(request: Request, sha256: str) -> dict[str, Any]:
    """Store the request body under its sha256 (checked; a mismatch stores nothing)."""
    store = blobs(request)
    if store.has(sha256):
        return {"size": store.size(sha256), "new": False}
    return {"size": await store.put_stream(sha256, request.stream()), "new": True}


@router.put(
    "/experiments/{exp_id}/attachments/{name:path}", dependencies=[Depends(require("write"))]
)
def put_attachment(request: Request, exp_id: str, name: str, info: JsonBody) -> dict[str, Any]:
    """Name blob ``info["sha256"]`` (already uploaded, ``info["size"]`` bytes) ``name``."""
    name = _attachment_name(name)
    info = obj(info, '{"sha256", "size", "run", "added"}')
    store = blobs(request)
    digest = info.get("sha256")
    if not store.has(digest) or store.size(digest) != info.get("size"):
        raise UserError(f"upload the bytes of {name!r} first (PUT /api/v1/blobs/<sha256>)")
    storage(request).put_attachment(check_id(exp_id), name, info)
    return {"ok": True}


@router.get(
    "/experiments/{exp_id}/attachments/{name:path}", dependencies=[Depends(require("read"))]
)
def get_attachment(request: Request, exp_id: str, name: str) -> FileResponse:
    name = _attachment_name(name)
    manifest = storage(request).attachments(check_id(exp_id))
    if name not in manifest:
        raise NotFound(f"experiment {exp_id} has no attachment {name!r}")
    return get_blob(request, manifest[name]["sha256"])
