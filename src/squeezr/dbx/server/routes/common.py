"""What the route modules share: the API prefix and the objects on ``app.state``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request, Response

from squeezr.dbx import jsonx
from squeezr.dbx.errors import UserError
from squeezr.dbx.server.repository import StorageRepository
from squeezr.dbx.server.storage import Blobs, Storage

API = "/api/v1"


def storage(request: Request) -> Storage:
    return request.app.state.storage


def blobs(request: Request) -> Blobs:
    return request.app.state.blobs


def repository(request: Request) -> StorageRepository:
    return StorageRepository(request.app.state.storage)


async def json_body(request: Request) -> Any:
    """The request body decoded by ``jsonx`` (Extended JSON NaN/±Infinity become floats, as
    in dbx's files); a one-line 400 if it is not JSON."""
    raw = await request.body()
    try:
        return jsonx.loads(raw) if raw else None
    except ValueError as exc:
        raise UserError(f"the request body is not JSON: {exc}") from None


async def bulk_body(request: Request) -> Any:
    """As :func:`json_body`, for the large bodies of event batches and sync bundles, which
    are parsed by orjson where that gives the same values (``jsonx.loads_bulk``)."""
    raw = await request.body()
    try:
        return jsonx.loads_bulk(raw) if raw else None
    except ValueError as exc:
        raise UserError(f"the request body is not JSON: {exc}") from None


def reply(data: Any) -> Response:
    """``data`` as JSON written by ``jsonx``, so NaN and ±Infinity survive (Extended JSON)."""
    return Response(jsonx.encode(data), media_type="application/json")


def obj(value: Any, what: str) -> dict[str, Any]:
    """``value`` if it is a JSON object, else a one-line 400 naming ``what`` it should be."""
    if not isinstance(value, dict):
        raise UserError(f"the request body must be a JSON object ({what})")
    return value


JsonBody = Annotated[Any, Depends(json_body)]
BulkBody = Annotated[Any, Depends(bulk_body)]
